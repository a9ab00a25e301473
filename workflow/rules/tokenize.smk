"""Tokenization: train_tokenizer (→ results/tokenizer/{dataset}/tokenizer.json, trained on the
train split or a pinned pretrained one) and tokenize (→ results/tokenized/{dataset}/{layout}/,
fixed-length memory-mapped arrays + meta.json)."""


rule train_tokenizer:
    input:
        data=paths.prepared(split="train"),
        hub=lambda wc: tokenizer_hub_inputs(config, wc.dataset),
    output:
        paths.tokenizer(),
    log:
        paths.log("train_tokenizer", "{dataset}"),
    priority: lambda wc: P.data(wc.dataset)
    conda:
        "../../envs/repro.yaml"
    resources:
        mem_mb=R.mem("default", 4000),
        runtime=R.runtime("default", 60),
    params:
        cfg=lambda wc: C.tokenizer_params(wc.dataset),
        kind=lambda wc: C.datasets[wc.dataset]["kind"],
        code=stage_digest("tokenizer"),
        env=LOCK,
    shell:
        "python -m repro.job repro.tokenization train --data-dir results/data/{wildcards.dataset}"
        " --kind {params.kind} --config-json {params.cfg:q} --out {output} > {log} 2>&1"


rule tokenize:
    input:
        data=paths.prepared_splits(),
        tokenizer=lambda wc: C.source_tokenizer(wc.dataset),
    output:
        paths.tokenized_arrays(),
        meta=paths.tokenized_meta(),
    log:
        paths.log("tokenize", "{dataset}/{layout}"),
    priority: lambda wc: P.data(wc.dataset)
    conda:
        "../../envs/repro.yaml"
    resources:
        mem_mb=R.mem("default", 4000),
        runtime=R.runtime("default", 60),
    params:
        options=lambda wc: C.layout_options(wc.dataset, wc.layout),
        seq_len=lambda wc: C.datasets[wc.dataset]["seq_len"],
        code=stage_digest("tokenize"),
        env=LOCK,
    shell:
        "python -m repro.job repro.tokenization encode --data-dir results/data/{wildcards.dataset}"
        " --tokenizer {input.tokenizer} --layout {wildcards.layout} --seq-len {params.seq_len}"
        " --options-json {params.options:q}"
        " --out-dir results/tokenized/{wildcards.dataset}/{wildcards.layout} > {log} 2>&1"
