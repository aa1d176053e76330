rule evaluate:
    """Held-out test metrics of a trained model."""
    input:
        model=f"{OUT}/models/{{task}}/model.keras",
        test=f"{OUT}/tasks/{{task}}/test.zarr",
    output:
        metrics=report(
            f"{OUT}/evaluation/{{task}}/metrics.json",
            caption="../report/metrics.rst",
            category="Evaluation",
            subcategory="{task}",
        ),
        predictions=f"{OUT}/evaluation/{{task}}/predictions.npz",
    log:
        f"{OUT}/logs/evaluate/{{task}}.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        TRAIN_ENV
    shell:
        TRAIN_PATH + "python -m cbedflow evaluate --task {wildcards.task} --model {input.model} "
        "--test {input.test} --out-json {output.metrics} "
        "--out-predictions {output.predictions} > {log} 2>&1"
