"""Sampling: sample_text (→ results/samples/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.jsonl),
one file per sampler × NFE × seed, with the exact NFE each sample received."""


rule sample_text:
    input:
        ckpt=lambda wc: f"results/train/{C.source(wc.dataset)}/{wc.experiment}/model.ckpt",
        data=lambda wc: C.tokenized_files(
            wc.dataset, C.layout(wc.dataset, wc.experiment), (C.eval_params(wc.dataset)["split"],)
        ),
        tokenizer=lambda wc: f"results/tokenizer/{C.source(wc.dataset)}/tokenizer.json",
        prepared=lambda wc: f"results/data/{wc.dataset}/{C.eval_params(wc.dataset)['split']}.jsonl",
    output:
        ensure(
            "results/samples/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.jsonl",
            non_empty=True,
        ),
    log:
        "logs/sample_text/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.log",
    benchmark:
        "benchmarks/sample_text/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.tsv"
    priority: lambda wc: P.sample(wc.dataset, wc.experiment, wc.nfe)
    conda:
        "../../envs/repro.yaml"
    threads: C.resource("sample", "threads", 1)
    resources:
        **R.stage_site("sample"),
        mem_mb=R.mem("sample", 8000),
        runtime=R.runtime("sample", 60),
        gpu=C.resource("sample", "gpu", 0),
    params:
        sampler=lambda wc: C.sampler_params(wc.experiment, wc.sampler),
        eval=lambda wc: C.sample_eval_params(wc.dataset, wc.experiment, wc.sampler),
        code=lambda wc: C.method_digest(wc.experiment, "sample"),
        data_dir=lambda wc, input: input.data[-1].rsplit("/", 1)[0],
        device="cpu" if config.get("accelerator") == "cpu" else "auto",
    shell:
        "REPRO_JOB_GPUS={resources.gpu} python -m repro.job repro.sample --ckpt {input.ckpt} --data {params.data_dir}"
        " --tokenizer {input.tokenizer} --prepared {input.prepared} --split {params.eval[split]}"
        " --sampler-name {wildcards.sampler} --sampler-json {params.sampler:q}"
        " --nfe {wildcards.nfe} --seed {wildcards.seed} --max-examples {params.eval[max_examples]}"
        " --batch-size {params.eval[batch_size]} --threads {threads} --device {params.device}"
        " --out {output} > {log} 2>&1"
