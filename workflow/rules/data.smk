"""Datasets: download_dataset (hub → resources/datasets/{dataset}/, login node) and
prepare_dataset (→ results/data/{dataset}/{train,validation,test}.jsonl, normalised rows)."""


rule download_dataset:
    output:
        directory(paths.raw_dataset()),
    log:
        paths.log("download_dataset", "{dataset}"),
    conda:
        "../../envs/repro.yaml"
    params:
        cfg=lambda wc: C.data_params(wc.dataset),
    shell:
        "env HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 TRANSFORMERS_OFFLINE=0 python -m repro.data.download --dataset {wildcards.dataset} --config-json {params.cfg:q}"
        " --out {output} > {log} 2>&1"


rule prepare_dataset:
    input:
        raw=lambda wc: C.raw_inputs(wc.dataset),
        local=lambda wc: C.local_files(wc.dataset),
    output:
        paths.prepared_splits(),
    log:
        paths.log("prepare_dataset", "{dataset}"),
    priority: lambda wc: P.data(wc.dataset)
    conda:
        "../../envs/repro.yaml"
    resources:
        mem_mb=R.mem("default", 4000),
        runtime=R.runtime("default", 60),
    params:
        cfg=lambda wc: C.data_params(wc.dataset),
        code=stage_digest("prepare"),
        raw=lambda wc, input: f"--raw {input.raw[0]}" if input.raw else "",
    shell:
        "python -m repro.job repro.data.prepare --dataset {wildcards.dataset} --config-json {params.cfg:q}"
        " {params.raw} --out-dir results/data/{wildcards.dataset} > {log} 2>&1"
