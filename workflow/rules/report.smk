"""Reporting: make_table (→ results/tables/{table}.csv + .md) and make_figure
(→ results/figures/{figure}.png + .pdf), built from the catalogue in config; they read scores JSON
and config/paper_values/, never checkpoints. All four are flagged for Snakemake's report of a fully
built target; `make report` (repro.report.html_report) reports whatever is built."""


rule make_table:
    input:
        scores=lambda wc: C.table_inputs(wc.table),
        paper=lambda wc: C.paper_values("tables", wc.table),
    output:
        csv=report(
            paths.table(),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "file": "long CSV"},
        ),
        md=report(
            paths.table(ext="md"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "file": "ours beside the paper (Markdown)"},
        ),
    log:
        paths.log("make_table", "{table}"),
    conda:
        "../../envs/repro.yaml"
    params:
        spec=lambda wc: C.table_spec(wc.table),
        paper=lambda wc, input: f"--paper-values {input.paper}" if input.paper else "",
        code=stage_digest("table"),
    shell:
        "python -m repro.job repro.report.tables --spec-json {params.spec:q} {params.paper}"
        " --out {output.csv} > {log} 2>&1"


rule make_figure:
    input:
        scores=lambda wc: C.figure_inputs(wc.figure),
        paper=lambda wc: C.paper_values("figures", wc.figure),
    output:
        png=report(
            paths.figure(),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}", "file": "PNG"},
        ),
        pdf=report(
            paths.figure(ext="pdf"),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}", "file": "PDF"},
        ),
    log:
        paths.log("make_figure", "{figure}"),
    conda:
        "../../envs/repro.yaml"
    params:
        spec=lambda wc: C.figure_spec(wc.figure),
        paper=lambda wc, input: f"--paper-values {input.paper}" if input.paper else "",
        code=stage_digest("figure"),
    shell:
        "python -m repro.job repro.report.figures --spec-json {params.spec:q} {params.paper}"
        " --out {output.png} > {log} 2>&1"
