# One evaluate/baseline/readout per test set: the clean test split, and with
# evaluate.noisy_test a noisy copy of it (rule noisy_test) in evaluation/.../noisy/.
for _sub, _split, _label in test_sets():
    _ev = f"{OUT}/evaluation/{{task}}/{{model}}{_sub}"

    rule:
        """Held-out test metrics of one model, with MC dropout and its calibration
        (classification: ECE; regression: interval coverage, scaled on the validation split)."""
        name:
            "evaluate" + _sub.replace("/", "_")
        input:
            model=f"{OUT}/models/{{task}}/{{model}}/model.keras",
            test=f"{OUT}/tasks/{{task}}/{_split}.zarr",
            validation=f"{OUT}/tasks/{{task}}/validation.zarr",
        output:
            metrics=report(
                f"{_ev}/metrics.json",
                caption="../report/metrics.rst",
                category="Evaluation",
                subcategory="{task}",
                labels={"model": "{model}", "figure": "metrics", "test set": _label},
            ),
            predictions=f"{_ev}/predictions.npz",
        log:
            f"{OUT}/logs/evaluate/{{task}}/{{model}}{_sub.replace('/', '_')}.log",
        params:
            spec=lambda wc: stage_params("evaluate"),
        resources:
            **rule_resources("evaluate"),
        conda:
            TRAIN_ENV
        shell:
            TRAIN_PATH + "python -m cbedflow evaluate --task {wildcards.task} --model {input.model} "
            "--test {input.test} --validation {input.validation} --params {params.spec:q} "
            "--out-json {output.metrics} "
            "--out-predictions {output.predictions} > {log} 2>&1"

    rule:
        """The campaign's baseline on the same examples as the model (lao_sto_cbed: ring-feature
        logistic regression; regularisation chosen on the validation split). On a noisy test
        set it is trained on the augmented training split, as the network is."""
        name:
            "baseline" + _sub.replace("/", "_")
        input:
            train=f"{OUT}/tasks/{{task}}/train{'_augmented' if _sub else ''}.zarr",
            validation=f"{OUT}/tasks/{{task}}/validation.zarr",
            test=f"{OUT}/tasks/{{task}}/{_split}.zarr",
        output:
            f"{_ev}/baseline.json",
        log:
            f"{OUT}/logs/baseline/{{task}}/{{model}}{_sub.replace('/', '_')}.log",
        params:
            spec=lambda wc: model_params(wc, "seed", "evaluate", *CAMPAIGN.baseline_sections),
        resources:
            **rule_resources("baseline"),
        conda:
            SIM_ENV
        shell:
            "python -m cbedflow baseline --params {params.spec:q} --task {wildcards.task} "
            "--train {input.train} --validation {input.validation} --test {input.test} "
            "--out-json {output} > {log} 2>&1"

    rule:
        """A readout task's derived quantities (lao_sto_ctr: layer parameters fitted to the
        predicted film field) on the test split, beside the baseline that predicts them
        directly."""
        name:
            "readout" + _sub.replace("/", "_")
        input:
            predictions=f"{_ev}/predictions.npz",
            baseline=f"{_ev}/baseline.json",
            test=f"{OUT}/tasks/{{task}}/{_split}.zarr",
            dataset=f"{OUT}/dataset.zarr",
        output:
            metrics=report(
                f"{_ev}/readout.json",
                caption="../report/readout.rst",
                category="Evaluation",
                subcategory="{task}",
                labels={"model": "{model}", "figure": "readout", "test set": _label},
            ),
            npz=f"{_ev}/readout.npz",
            plots=report(
                directory(f"{OUT}/plots/{{task}}/{{model}}/readout{_sub.replace('/', '_')}"),
                patterns=["{name}.png"],
                caption="../report/readout.rst",
                category="Evaluation",
                subcategory="{task}",
                labels={"model": "{model}", "figure": "{name}", "test set": _label},
            ),
        log:
            f"{OUT}/logs/readout/{{task}}/{{model}}{_sub.replace('/', '_')}.log",
        params:
            spec=lambda wc: model_params(wc, "seed", *CAMPAIGN.config_sections, "evaluate"),
        resources:
            **rule_resources("evaluate"),
        conda:
            SIM_ENV
        shell:
            "python -m cbedflow readout --params {params.spec:q} --task {wildcards.task} "
            "--predictions {input.predictions} --baseline {input.baseline} --test {input.test} "
            "--dataset {input.dataset} --plots {output.plots} --out-json {output.metrics} "
            "--out-npz {output.npz} > {log} 2>&1"


def _summary_models():
    out = []
    for task, model in all_models():
        base = f"{OUT}/evaluation/{task}/{model}"
        entry = {"task": task, "model": model, "metrics": f"{base}/metrics.json",
                 "predictions": f"{base}/predictions.npz", "baseline": f"{base}/baseline.json"}
        if has_readout(task):
            entry["readout"] = f"{base}/readout.json"
        for sub, _, label in test_sets()[1:]:
            entry[label] = {k: v.replace(base, base + sub) for k, v in entry.items()
                            if k not in ("task", "model")}
        out.append(json.dumps(entry))
    return out


rule summarize:
    """Every model's metrics and baseline in one JSON (schema:
    workflow/schemas/summary.schema.yaml)."""
    input:
        [f"{OUT}/evaluation/{t}/{m}{sub}/{f}" for t, m in all_models()
         for sub, _, _ in test_sets()
         for f in ("metrics.json", "predictions.npz", "baseline.json")
         + (("readout.json",) if has_readout(t) else ())],
    output:
        report(f"{OUT}/summary.json", caption="../report/summary.rst", category="Evaluation",
               labels={"figure": "summary"}),
    log:
        f"{OUT}/logs/summarize.log",
    params:
        spec=lambda wc: stage_params("seed", "tasks", *CAMPAIGN.config_sections,
                                     "split", "augment", "train", "evaluate"),
        models=" ".join(f"--model {shlex_quote(m)}" for m in _summary_models()),
    resources:
        **rule_resources("summarize"),
    conda:
        SIM_ENV
    shell:
        "python -m cbedflow summarize --params {params.spec:q} {params.models} "
        "--out {output} > {log} 2>&1"
