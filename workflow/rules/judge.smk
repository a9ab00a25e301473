"""Judges of generative perplexity: train_judge (→ results/judges/{judge}/, a tiny GPT-2 trained on
a dataset's train split and saved with save_pretrained — the smoke config's judge) and
download_judge (→ resources/judges/{judge}/, a pinned hub snapshot, on the login node). Scoring
loads either through the same transformers code path."""


rule train_judge:
    input:
        lambda wc: C.judge_train_data(wc.judge),
    output:
        directory(paths.trained_judge()),
    log:
        paths.log("train_judge", "{judge}"),
    priority: lambda wc: P.judge(wc.judge)
    conda:
        "../../envs/repro.yaml"
    threads: C.resource("train", "threads", 1)
    resources:
        mem_mb=R.mem("train", 8000),
        runtime=R.runtime("train", 60),
    params:
        cfg=lambda wc: C.judge_train_params(wc.judge),
        kind=lambda wc: C.judge_train_kind(wc.judge),
        code=stage_digest("judge"),
    shell:
        "python -m repro.job repro.judge train --data {input} --kind {params.kind}"
        " --config-json {params.cfg:q} --threads {threads} --out {output} > {log} 2>&1"


rule download_judge:
    output:
        directory(paths.downloaded_judge()),
    log:
        paths.log("download_judge", "{judge}"),
    conda:
        "../../envs/repro.yaml"
    params:
        hub=lambda wc: C.judges[wc.judge]["hub"],
    shell:
        "env HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 TRANSFORMERS_OFFLINE=0 python -m repro.job repro.judge download --id {params.hub[id]} --revision {params.hub[revision]}"
        " --out {output} > {log} 2>&1"
