"""repro: regenerate the tables and figures of FM-seq2seq, KL-flow and DiffuSeq.

    snakemake --profile slurm results/tables/table3.csv     # one table, only stale jobs rerun
    snakemake --profile slurm --forceall paper               # everything from scratch
    make demo                                                # the smoke config on CPU

Aggregation only: the stages are in workflow/rules/, their logic in src/repro/.
"""

from pathlib import Path

from snakemake.utils import min_version

from repro.config_file import check_config_files

min_version("9.0")


# Every path of the pipeline (config/, results/, resources/) is relative to the repository root:
# run from elsewhere (`snakemake -s ../Snakefile`), it would plan a retrain under another results/.
ROOT = Path(workflow.basedir).resolve()
if ROOT != Path.cwd().resolve():
    raise WorkflowError(
        f"run snakemake from the repository root {ROOT} (the working directory is {Path.cwd()}): "
        f"every path of the pipeline is relative to it; `cd {ROOT}` first, or pass "
        f"`--directory {ROOT}`"
    )


# The paper config is the default. A config given with --configfile (e.g. config/smoke.yaml)
# replaces it instead of being merged into it, so a small config never inherits the paper catalogue.
if not workflow.overwrite_configfiles:
    check_config_files(["config/config.yaml"])  # a syntax error or duplicate key: file:line

    configfile: "config/config.yaml"


# Snakemake has read the --configfile files (keeping the last of duplicate keys): reread strictly
check_config_files(workflow.overwrite_configfiles or [])


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/hub.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/mbr.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    paper,
    download_dataset,
    download_judge,
    download_hub,
    make_table,
    make_figure,
    export_embeddings,


rule paper:
    input:
        C.targets(),


rule all:
    default_target: True
    input:
        rules.paper.input,
