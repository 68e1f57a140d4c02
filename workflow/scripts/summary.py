from scalinglab.core.scripting import run
from scalinglab.report.summary import write_summary

run(snakemake, write_summary)
