rule collect:
    """Average batches, validate every unit and stack the dataset (zarr v3)."""
    input:
        sim_jobs(),
    output:
        directory(CAMPAIGN.dataset_path),
    log:
        f"{OUT}/logs/collect.log",
    params:
        spec=lambda wc: stage_params(*UNIT_SECTIONS, "output_dir"),
    resources:
        **rule_resources("collect"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow collect --params {params.spec:q} --campaign-units "
        "--out {output} > {log} 2>&1"
