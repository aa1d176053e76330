rule simulate:
    """Frozen-phonon multislice 4D-STEM of one (structure, thickness, phonon batch) unit."""
    input:
        structure=f"{OUT}/structures/{{structure}}.extxyz",
    output:
        directory(f"{OUT}/simulations/{{structure}}/t{{thickness}}/b{{batch}}.zarr"),
    log:
        f"{OUT}/logs/simulate/{{structure}}/t{{thickness}}/b{{batch}}.log",
    params:
        spec=lambda wc: stage_params("seed", "device", "microscope", "simulation"),
    threads: config["simulation"]["fft_threads"]
    resources:
        mem_mb=config["resources"]["simulate_mem_mb"],
        runtime=config["resources"]["simulate_runtime_min"],
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow simulate --params {params.spec:q} "
        "--structure {input.structure} --thickness {wildcards.thickness} "
        "--batch {wildcards.batch} --out {output} > {log} 2>&1"
