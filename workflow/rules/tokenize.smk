"""Tokenization: train_tokenizer (→ results/tokenizer/{dataset}/tokenizer.json, trained on the
train split or a pinned pretrained one) and tokenize (→ results/tokenized/{dataset}/{layout}/,
fixed-length memory-mapped arrays + meta.json)."""


rule train_tokenizer:
    input:
        data="results/data/{dataset}/train.jsonl",
        hub=lambda wc: cluster.tokenizer_hub_inputs(config, wc.dataset),
    output:
        "results/tokenizer/{dataset}/tokenizer.json",
    log:
        "logs/train_tokenizer/{dataset}.log",
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
        data=expand("results/data/{{dataset}}/{split}.jsonl", split=SPLITS),
        tokenizer=lambda wc: f"results/tokenizer/{C.source(wc.dataset)}/tokenizer.json",
    output:
        expand(
            "results/tokenized/{{dataset}}/{{layout}}/{split}.{array}.npy",
            split=SPLITS,
            array=["ids", "cond"],
        ),
        meta="results/tokenized/{dataset}/{layout}/meta.json",
    log:
        "logs/tokenize/{dataset}/{layout}.log",
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
