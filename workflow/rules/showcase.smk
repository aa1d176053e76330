# The showcase (a campaign with Campaign.showcase_section, its `enabled` key on): a
# simulated image with known ground truth, read by every task's model as a measured
# image; its maps beside the truth and the score go into the report (abf_tilts: tilt
# maps of a film beside a substrate; docs/abf.md). Code: cbedflow.showcase.

_SHOW = f"{OUT}/showcase"


def showcase_model(task):
    """The model of ``task`` that reads the showcase image: ``all`` if the task has
    it, else its first."""
    ids = [m.id for m in task_models(task)]
    return "all" if "all" in ids else ids[0]


def showcase_targets():
    """The showcase's report files (none unless the campaign has one and it is on)."""
    if not CAMPAIGN.has_showcase():
        return []
    return [f"{OUT}/plots/showcase/maps.png", f"{_SHOW}/score.json"]


if CAMPAIGN.has_showcase():

    rule showcase_image:
        """The campaign's showcase image and its ground truth (abf_tilts: the interface
        supercell simulated with the imaging section)."""
        output:
            image=f"{_SHOW}/image/image.npy",
            truth=f"{_SHOW}/image/truth.json",
        log:
            f"{OUT}/logs/showcase/image.log",
        params:
            spec=lambda wc: stage_params(*CAMPAIGN.showcase_sections),
            out_dir=f"{_SHOW}/image",
        resources:
            **rule_resources("showcase"),
        threads: CAMPAIGN.threads_per_rank
        conda:
            SIM_ENV
        shell:
            "python -m cbedflow showcase image --params {params.spec:q} "
            "--out-dir {params.out_dir} > {log} 2>&1"

    rule showcase_predict:
        """One task's model on the showcase image, read as a measured image."""
        input:
            model=lambda wc: f"{OUT}/models/{wc.task}/{showcase_model(wc.task)}/model.keras",
            image=rules.showcase_image.output.image,
            truth=rules.showcase_image.output.truth,
        output:
            directory(f"{_SHOW}/predict/{{task}}"),
        log:
            f"{OUT}/logs/showcase/predict_{{task}}.log",
        params:
            spec=lambda wc: stage_params(),
            image_dir=f"{_SHOW}/image",
            mc=config["evaluate"]["mc_dropout_samples"],
        resources:
            **rule_resources("predict"),
        conda:
            TRAIN_ENV
        shell:
            TRAIN_PATH + "python -m cbedflow showcase predict --params {params.spec:q} "
            "--image-dir {params.image_dir} --model {input.model} --task {wildcards.task} "
            "--mc-samples {params.mc} --out-dir {output} > {log} 2>&1"

    rule showcase_maps:
        """The predicted maps beside the truth, and their score."""
        input:
            truth=rules.showcase_image.output.truth,
            predictions=expand(f"{_SHOW}/predict/{{task}}", task=config["tasks"]),
        output:
            png=report(f"{OUT}/plots/showcase/maps.png", caption="../report/showcase.rst",
                       category="Showcase", labels={"figure": "maps of a simulated image"}),
            score=report(f"{_SHOW}/score.json", caption="../report/showcase.rst",
                         category="Showcase", labels={"figure": "score"}),
        log:
            f"{OUT}/logs/showcase/maps.log",
        params:
            spec=lambda wc: stage_params(*CAMPAIGN.showcase_sections),
            image_dir=f"{_SHOW}/image",
            predictions=" ".join(f"--prediction {t}={_SHOW}/predict/{t}"
                                 for t in config["tasks"]),
        resources:
            **rule_resources("plot"),
        conda:
            SIM_ENV
        shell:
            "python -m cbedflow showcase maps --params {params.spec:q} "
            "--image-dir {params.image_dir} {params.predictions} --out-png {output.png} "
            "--out-json {output.score} > {log} 2>&1"
