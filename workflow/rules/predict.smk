# `snakemake predict --config predict_input=<data>`: apply a trained model to measured
# data, read by the campaign (lao_sto_cbed: 4D-STEM .npy, .h5 or zarr group). Options: the
# `predict` config section.

_PRED = config["predict"]
_PRED_TASK = _PRED["task"] or config["tasks"][0]

if config["predict_input"]:

    rule predict:
        """The model's output for every example of the measured data (lao_sto_cbed: class
        probabilities of every scan line), and a map plot."""
        input:
            model=f"{OUT}/models/{_PRED_TASK}/{_PRED['model']}/model.keras",
            data=config["predict_input"],
        output:
            directory(f"{OUT}/predictions/{Path(config['predict_input']).stem}"
                      f"-{_PRED_TASK}-{_PRED['model']}"),
        log:
            f"{OUT}/logs/predict/{Path(config['predict_input']).stem}.log",
        params:
            flags=" ".join(
                f"--{flag} {_PRED[key]}" for key, flag in (
                    ("scan_step_A", "scan-step-A"),
                    ("angular_sampling_mrad", "angular-sampling-mrad"),
                    ("thickness_A", "thickness-A"),
                    ("negative_floor", "negative-floor"))
                if _PRED.get(key) is not None),
            mc=config["evaluate"]["mc_dropout_samples"],
            spec=stage_params(),
        resources:
            **rule_resources("predict"),
        conda:
            TRAIN_ENV
        shell:
            TRAIN_PATH + "python -m cbedflow predict --model {input.model} --task "
            f"{_PRED_TASK} --input {{input.data:q}} {{params.flags}} --mc-samples {{params.mc}} "
            "--params {params.spec:q} "
            "--out-dir {output} > {log} 2>&1 || {{ cat {log} >&2; exit 2; }}"

else:

    rule predict:
        """Needs --config predict_input=<data>."""
        localrule: True
        shell:
            "echo 'error: snakemake predict needs --config predict_input=<new data: .npy, "
            ".h5 or zarr group, shape (scan_x, scan_y, kx, ky)>' >&2; exit 2"
