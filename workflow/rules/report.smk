rule plot_dataset:
    """Dark-field image and CBED montage along one line of one simulation."""
    input:
        CAMPAIGN.dataset_path,
    output:
        report(f"{OUT}/plots/dataset_overview.png", caption="../report/dataset_overview.rst",
               category="Simulation"),
    log:
        f"{OUT}/logs/plots/dataset_overview.log",
    params:
        semiangle=config["microscope"]["semiangle_mrad"],
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot dataset --dataset {input} --semiangle-mrad {params.semiangle} "
        "--out {output} > {log} 2>&1"


rule plot_curves:
    """Training and validation curves."""
    input:
        f"{OUT}/models/{{task}}/history.csv",
    output:
        report(f"{OUT}/plots/{{task}}/training_curves.png",
               caption="../report/training_curves.rst", category="Training",
               subcategory="{task}"),
    log:
        f"{OUT}/logs/plots/{{task}}_curves.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot curves --history {input} --out {output} > {log} 2>&1"


rule plot_confusion:
    """Confusion matrix of the test split."""
    input:
        f"{OUT}/evaluation/{{task}}/metrics.json",
    output:
        report(f"{OUT}/plots/{{task}}/confusion_matrix.png",
               caption="../report/confusion_matrix.rst", category="Evaluation",
               subcategory="{task}"),
    log:
        f"{OUT}/logs/plots/{{task}}_confusion.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot confusion --metrics {input} --out {output} > {log} 2>&1"


rule plot_examples:
    """Example test predictions with their softmax probability."""
    input:
        test=f"{OUT}/tasks/{{task}}/test.zarr",
        predictions=f"{OUT}/evaluation/{{task}}/predictions.npz",
    output:
        report(f"{OUT}/plots/{{task}}/example_predictions.png",
               caption="../report/example_predictions.rst", category="Evaluation",
               subcategory="{task}"),
    log:
        f"{OUT}/logs/plots/{{task}}_examples.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot examples --test {input.test} "
        "--predictions {input.predictions} --out {output} > {log} 2>&1"
