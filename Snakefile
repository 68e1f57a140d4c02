# scaling-lab: neural-scaling-law experiments, from data to exponents to report.
# `snakemake --cores all` runs the embedded default (config/config.yaml); presets live in config/presets/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        all_targets(),
    default_target: True
