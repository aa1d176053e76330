rule crop:
    """Cut the campaign's examples from every sample (lao_sto_cbed: cropped patterns along
    a line scan), split by sample."""
    input:
        CAMPAIGN.dataset_path,
    output:
        train=directory(f"{OUT}/tasks/{{task}}/train.zarr"),
        validation=directory(f"{OUT}/tasks/{{task}}/validation.zarr"),
        test=directory(f"{OUT}/tasks/{{task}}/test.zarr"),
    log:
        f"{OUT}/logs/crop/{{task}}.log",
    params:
        spec=lambda wc: stage_params("seed", "split", *CAMPAIGN.example_sections),
        out_dir=lambda wc: task_dir(wc.task),
    resources:
        **rule_resources("crop"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow crop --params {params.spec:q} --task {wildcards.task} "
        "--dataset {input} --out-dir {params.out_dir} > {log} 2>&1"
