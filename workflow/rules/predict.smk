# `snakemake predict --config predict_input=<data>`: apply a trained model to measured
# data, read by the campaign (lao_sto_cbed: 4D-STEM in the formats of docs/predict.md).
# Options: the `predict` config section.

_PRED = config["predict"]
_PRED_TASK = _PRED["task"] or config["tasks"][0]

_PRED_DIR = (f"{OUT}/predictions/{Path(config['predict_input'] or 'none').stem}"
             f"-{_PRED_TASK}-{_PRED['model']}")
# a readout task (lao_sto_ctr: layer parameters) adds a second step in the simulation
# environment: `snakemake predict` runs both
_PRED_READOUT = _PRED_TASK in config["tasks"] and has_readout(_PRED_TASK)

if config["predict_input"]:

    rule:
        """The model's output for every example of the measured data (lao_sto_cbed: class
        probabilities of every scan line), and a map plot."""
        name:
            "predict_network" if _PRED_READOUT else "predict"
        input:
            model=f"{OUT}/models/{_PRED_TASK}/{_PRED['model']}/model.keras",
            data=config["predict_input"],
        output:
            directory(_PRED_DIR),
        log:
            f"{OUT}/logs/predict/{Path(config['predict_input']).stem}.log",
        params:
            flags=" ".join(
                f"--{flag} {_PRED[key]}" for key, flag in (
                    ("scan_step_A", "scan-step-A"),
                    ("angular_sampling_mrad", "angular-sampling-mrad"),
                    ("thickness_A", "thickness-A"),
                    ("negative_floor", "negative-floor"),
                    ("energy_kV", "energy-kV"),
                    ("semiangle_mrad", "semiangle-mrad"),
                    ("scan_axis", "scan-axis"),
                    ("haadf", "haadf"),
                    ("window_start_A", "window-start-A"))
                if _PRED.get(key) is not None) + (
                " --scan-shape {} {}".format(*_PRED["scan_shape"])
                if _PRED.get("scan_shape") else ""),
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

    if _PRED_READOUT:

        rule predict:
            """The readout of the prediction (lao_sto_ctr: the layer parameters fitted to the
            predicted U and refined against the measured intensities, with standard errors)."""
            input:
                prediction=_PRED_DIR,
                data=config["predict_input"],
            output:
                directory(_PRED_DIR + "-readout"),
            log:
                f"{OUT}/logs/predict/{Path(config['predict_input']).stem}-readout.log",
            params:
                spec=stage_params("seed", *CAMPAIGN.config_sections, "evaluate"),
            resources:
                **rule_resources("predict"),
            conda:
                SIM_ENV
            shell:
                f"python -m cbedflow predict-readout --task {_PRED_TASK} "
                "--prediction {input.prediction} --input {input.data:q} "
                "--params {params.spec:q} --out-dir {output} > {log} 2>&1 "
                "|| {{ cat {log} >&2; exit 2; }}"

else:

    rule predict:
        """Needs --config predict_input=<data>."""
        localrule: True
        shell:
            "echo 'error: snakemake predict needs --config predict_input=<new data: .npy, "
            ".h5 or zarr group, shape (scan_x, scan_y, kx, ky)>' >&2; exit 2"
