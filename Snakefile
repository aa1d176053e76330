# cbedflow: learn structure an instrument cannot show from simulated measurements
# (campaigns: workflow/cbedflow/campaigns/; the default, lao_sto_cbed, is 4D-STEM of a
# buried LaAlO3/SrTiO3 interface).
#
#   snakemake --profile profiles/local                      # tiny campaign
#   snakemake -n --configfile config/paper.yaml             # paper-scale preview
#
# Stages, one file each under workflow/rules/:
#   simulate (packed jobs: samples + forward model) -> collect -> crop (examples) -> augment
#   -> train -> evaluate (+ baseline) -> report; showcase (a simulated image with known
#   truth read by the trained models, its maps in the report) where the campaign has one

from snakemake.utils import min_version

min_version("9.0")


# the tiny campaign unless --configfile names another (a campaign's config
# would otherwise be merged into the LAO/STO one's keys)
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"



include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/crop.smk"
include: "workflow/rules/augment.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/showcase.smk"


report: report_text()


rule all:
    input:
        final_targets() + showcase_targets(),
    default_target: True
