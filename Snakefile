"""repro: regenerate the tables and figures of FM-seq2seq, KL-flow and DiffuSeq.

    snakemake --profile slurm results/tables/table3.csv     # one table, only stale jobs rerun
    snakemake --profile slurm --forceall paper               # everything from scratch
    make demo                                                # the smoke config on CPU

Aggregation only: the stages are in workflow/rules/, their logic in src/repro/.
"""

from snakemake.utils import min_version

min_version("9.0")


# The paper config is the default. A config given with --configfile (e.g. config/smoke.yaml)
# replaces it instead of being merged into it, so a small config never inherits the paper catalogue.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


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
