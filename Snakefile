# scaling-lab: neural-scaling-law experiments, from data to exponents to report.
# `snakemake --cores all` runs the embedded default (config/config.yaml); presets live in config/presets/.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# A --configfile (a preset) is a whole configuration: it replaces the embedded default instead of
# being merged key by key into it; keys it leaves out take the schema's defaults, and experiments
# (stage sections) it leaves out are off.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# One rule file per experiment, over common.smk (what all share). Order matters only where a file
# uses another's definitions: datasets before the image experiments, dimension before the fits that
# read its table, teacher_student before joint (which reuses its rules).
include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/dimension.smk"
include: "workflow/rules/teacher_student.smk"
include: "workflow/rules/joint.smk"
include: "workflow/rules/perceptron.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/deep_nets.smk"
include: "workflow/rules/random_features.smk"
include: "workflow/rules/summary.smk"


# The landing page is the summary rule's table of headline numbers once it exists, else the generic text
# (absolute: Snakemake resolves a relative path here against the Snakefile's folder, not the work directory).
LANDING = Path.cwd() / "results" / "report" / "landing.rst"


report: str(LANDING) if LANDING.exists() else "workflow/report/workflow.rst"


check_request()


rule all:
    input:
        all_targets(),
    default_target: True
