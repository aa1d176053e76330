rule train:
    """Horovod data-parallel training of the task's network (launcher from config/profile);
    one model per (task, model id): all thicknesses, one thickness, or all with a
    thickness input (config train.variants)."""
    input:
        train=f"{OUT}/tasks/{{task}}/train_augmented.zarr",
        validation=f"{OUT}/tasks/{{task}}/validation.zarr",
    output:
        model=f"{OUT}/models/{{task}}/{{model}}/model.keras",
        history=f"{OUT}/models/{{task}}/{{model}}/history.csv",
    log:
        f"{OUT}/logs/train/{{task}}/{{model}}.log",
    params:
        spec=lambda wc: model_params(wc, "seed", "train", "site"),
        launcher=launcher(),
        ranks=TRAIN_SHAPE.ranks,
        out_dir=lambda wc: f"{OUT}/models/{wc.task}/{wc.model}",
    # threads: the cores the ranks occupy on a local run; on a cluster the
    # request comes from the site (cpus_per_task = site.cpus_per_rank per rank)
    threads: TRAIN_SHAPE.ranks
    resources:
        **rule_resources("train"),
        # nodes, tasks, gpu, cpus_per_task (+ mpi): cbedflow.site
        **TRAIN_SHAPE.resources(),
    conda:
        TRAIN_ENV
    shell:
        TRAIN_PATH + "{params.launcher} python -m cbedflow train --params {params.spec:q} "
        "--task {wildcards.task} --train {input.train} --validation {input.validation} "
        "--out-dir {params.out_dir} --ranks {params.ranks} --walltime-min {resources.runtime} "
        "> {log} 2>&1"
