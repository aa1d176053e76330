rule train:
    """Horovod data-parallel training of the 3D-CNN (launcher from config/profile);
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
        out_dir=lambda wc: f"{OUT}/models/{wc.task}/{wc.model}",
    threads: config["site"]["train_ranks"]
    resources:
        mem_mb=8000,
        runtime=240,
        tasks=config["site"]["train_ranks"],
    conda:
        TRAIN_ENV
    shell:
        TRAIN_PATH + "{params.launcher} python -m cbedflow train --params {params.spec:q} "
        "--task {wildcards.task} --train {input.train} --validation {input.validation} "
        "--out-dir {params.out_dir} --walltime-min {resources.runtime} > {log} 2>&1"
