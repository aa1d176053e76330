# cbedflow: learn buried interface structure from simulated 4D-STEM data.
#
#   snakemake --profile profiles/local                      # tiny campaign
#   snakemake -n --configfile config/paper.yaml             # paper-scale preview
#
# Stages, one file each under workflow/rules/: structures -> simulate -> collect.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/structures.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/collect.smk"


rule all:
    input:
        CAMPAIGN.dataset_path,
    default_target: True
