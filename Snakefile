# cbedflow: learn buried interface structure from simulated 4D-STEM data.
#
#   snakemake --profile profiles/local                      # tiny campaign
#   snakemake -n --configfile config/paper.yaml             # paper-scale preview
#
# Stages, one file each under workflow/rules/:
#   simulate (packed jobs: structures + 4D-STEM) -> collect -> crop -> augment -> train -> evaluate -> report

from snakemake.utils import min_version

min_version("9.0")


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


report: report_text()


rule all:
    input:
        final_targets(),
    default_target: True
