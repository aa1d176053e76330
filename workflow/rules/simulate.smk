rule simulate_job:
    """A packed batch job: site.units_per_job simulation units of the campaign (e.g.
    structure x thickness x phonon batch), spread over site.ranks_per_job MPI ranks.
    Builds the samples it needs, skips units already complete with the same settings."""
    output:
        f"{OUT}/simulations/jobs/{{job}}.json",
    log:
        f"{OUT}/logs/simulate/{{job}}.log",
    params:
        spec=lambda wc: stage_params(*UNIT_SECTIONS, "output_dir"),
        launcher=lambda wc: sim_launcher(),
        units_per_job=config["site"]["units_per_job"],
        ranks=SIM_SHAPE.ranks,
    threads: CAMPAIGN.threads_per_rank
    resources:
        mem_mb=config["resources"]["simulate_mem_mb"],
        runtime=config["resources"]["simulate_runtime_min"],
        # nodes, tasks, gpu, cpus_per_task (+ mpi): cbedflow.site
        **SIM_SHAPE.resources(),
    conda:
        SIM_ENV
    shell:
        "{params.launcher}python -m cbedflow simulate-job --params {params.spec:q} "
        "--job {wildcards.job} --units-per-job {params.units_per_job} --ranks {params.ranks} "
        "--manifest {output} > {log} 2>&1"
