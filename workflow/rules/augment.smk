rule augment:
    """The campaign's augmentations of the training split (lao_sto_cbed: Poisson noise at
    several doses and small rotations)."""
    input:
        f"{OUT}/tasks/{{task}}/train.zarr",
    output:
        directory(f"{OUT}/tasks/{{task}}/train_augmented.zarr"),
    log:
        f"{OUT}/logs/augment/{{task}}.log",
    params:
        spec=lambda wc: stage_params("seed", "augment", *CAMPAIGN.augment_sections),
    resources:
        **rule_resources("augment"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow augment --params {params.spec:q} --train {input} "
        "--out {output} > {log} 2>&1"


rule noisy_test:
    """A noisy copy of the test split (evaluate.noisy_test): one augmentation per held-out
    example, seeded apart from the training copies."""
    input:
        f"{OUT}/tasks/{{task}}/test.zarr",
    output:
        directory(f"{OUT}/tasks/{{task}}/test_noisy.zarr"),
    log:
        f"{OUT}/logs/augment/{{task}}_noisy_test.log",
    params:
        spec=lambda wc: stage_params("seed", "augment", *CAMPAIGN.augment_sections),
    resources:
        **rule_resources("augment"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow augment --noisy-test --params {params.spec:q} --train {input} "
        "--out {output} > {log} 2>&1"
