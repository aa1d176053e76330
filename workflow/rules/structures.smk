rule build_structure:
    """Build one LAO/STO structure at every configured thickness (ase)."""
    output:
        f"{OUT}/structures/{{structure}}.extxyz",
    log:
        f"{OUT}/logs/structures/{{structure}}.log",
    params:
        spec=lambda wc: stage_params("seed", "structures"),
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow structure --params {params.spec:q} "
        "--name {wildcards.structure} --out {output} > {log} 2>&1"
