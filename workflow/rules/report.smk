rule plot_dataset:
    """The campaign's overview of the dataset (lao_sto_cbed: dark-field image and CBED
    montage along one line of one simulation)."""
    input:
        CAMPAIGN.dataset_path,
    output:
        report(f"{OUT}/plots/dataset_overview.png", caption="../report/dataset_overview.rst",
               category="Simulation", labels={"figure": "dataset overview"}),
    log:
        f"{OUT}/logs/plots/dataset_overview.log",
    params:
        spec=lambda wc: stage_params(*CAMPAIGN.config_sections),
    resources:
        **rule_resources("plot", mem_factor=2),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot dataset --dataset {input} --params {params.spec:q} "
        "--out {output} > {log} 2>&1"


rule plot_curves:
    """Training and validation curves."""
    input:
        f"{OUT}/models/{{task}}/{{model}}/history.csv",
    output:
        report(f"{OUT}/plots/{{task}}/{{model}}/training_curves.png",
               caption="../report/training_curves.rst", category="Training",
               subcategory="{task}", labels={"model": "{model}", "figure": "training curves"}),
    log:
        f"{OUT}/logs/plots/{{task}}/{{model}}_curves.log",
    resources:
        **rule_resources("plot"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot curves --history {input} --out {output} > {log} 2>&1"


rule plot_confusion:
    """Confusion matrix of the test split."""
    input:
        f"{OUT}/evaluation/{{task}}/{{model}}/metrics.json",
    output:
        report(f"{OUT}/plots/{{task}}/{{model}}/confusion_matrix.png",
               caption="../report/confusion_matrix.rst", category="Evaluation",
               subcategory="{task}", labels={"model": "{model}", "figure": "confusion matrix"}),
    log:
        f"{OUT}/logs/plots/{{task}}/{{model}}_confusion.log",
    resources:
        **rule_resources("plot"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot confusion --metrics {input} --out {output} > {log} 2>&1"


rule plot_reliability:
    """Reliability diagram and ECE of the softmax and of MC dropout."""
    input:
        f"{OUT}/evaluation/{{task}}/{{model}}/metrics.json",
    output:
        report(f"{OUT}/plots/{{task}}/{{model}}/reliability.png",
               caption="../report/reliability.rst", category="Evaluation",
               subcategory="{task}", labels={"model": "{model}", "figure": "reliability"}),
    log:
        f"{OUT}/logs/plots/{{task}}/{{model}}_reliability.log",
    resources:
        **rule_resources("plot"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot reliability --metrics {input} --out {output} > {log} 2>&1"


rule plot_parity:
    """Regression: predicted (MC-dropout mean) against true value of every target."""
    input:
        metrics=f"{OUT}/evaluation/{{task}}/{{model}}/metrics.json",
        predictions=f"{OUT}/evaluation/{{task}}/{{model}}/predictions.npz",
    output:
        report(f"{OUT}/plots/{{task}}/{{model}}/parity.png",
               caption="../report/parity.rst", category="Evaluation",
               subcategory="{task}", labels={"model": "{model}", "figure": "parity"}),
    log:
        f"{OUT}/logs/plots/{{task}}/{{model}}_parity.log",
    resources:
        **rule_resources("plot"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot parity --metrics {input.metrics} "
        "--predictions {input.predictions} --out {output} > {log} 2>&1"


rule plot_residuals:
    """Regression: residuals against the true value, with calibrated MC-dropout intervals."""
    input:
        metrics=f"{OUT}/evaluation/{{task}}/{{model}}/metrics.json",
        predictions=f"{OUT}/evaluation/{{task}}/{{model}}/predictions.npz",
    output:
        report(f"{OUT}/plots/{{task}}/{{model}}/residuals.png",
               caption="../report/residuals.rst", category="Evaluation",
               subcategory="{task}", labels={"model": "{model}", "figure": "residuals"}),
    log:
        f"{OUT}/logs/plots/{{task}}/{{model}}_residuals.log",
    resources:
        **rule_resources("plot"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot residuals --metrics {input.metrics} "
        "--predictions {input.predictions} --out {output} > {log} 2>&1"


rule plot_examples:
    """Example test predictions with their MC-dropout probabilities."""
    input:
        test=f"{OUT}/tasks/{{task}}/test.zarr",
        predictions=f"{OUT}/evaluation/{{task}}/{{model}}/predictions.npz",
    output:
        report(f"{OUT}/plots/{{task}}/{{model}}/example_predictions.png",
               caption="../report/example_predictions.rst", category="Evaluation",
               subcategory="{task}", labels={"model": "{model}", "figure": "examples"}),
    log:
        f"{OUT}/logs/plots/{{task}}/{{model}}_examples.log",
    resources:
        **rule_resources("plot"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot examples --test {input.test} "
        "--predictions {input.predictions} --out {output} > {log} 2>&1"


rule plot_overview:
    """Every model of a task against its baseline: per-thickness accuracy and the task's
    breakdown (classification), R² per target (regression)."""
    input:
        f"{OUT}/summary.json",
    output:
        report(f"{OUT}/plots/{{task}}/accuracy_overview.png",
               caption="../report/accuracy_overview.rst", category="Evaluation",
               subcategory="{task}", labels={"model": "all models", "figure": "accuracy"}),
    log:
        f"{OUT}/logs/plots/{{task}}/overview.log",
    resources:
        **rule_resources("plot"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow plot overview --summary {input} --task {wildcards.task} "
        "--out {output} > {log} 2>&1"
