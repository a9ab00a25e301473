"""Sampling: sample_text (→ results/samples/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.jsonl),
one file per sampler × NFE × seed, with the exact NFE each sample received."""


rule sample_text:
    input:
        ckpt=lambda wc: C.source_ckpt(wc.dataset, wc.experiment),
        data=lambda wc: C.eval_inputs(wc.dataset, wc.experiment),
        tokenizer=lambda wc: C.source_tokenizer(wc.dataset),
        prepared=lambda wc: C.eval_prepared(wc.dataset),
    output:
        ensure(paths.samples(draw="seed{seed}"), non_empty=True),
    log:
        paths.log("sample_text", f"{paths.CELL}/seed{{seed}}"),
    benchmark:
        paths.benchmark("sample_text", f"{paths.CELL}/seed{{seed}}")
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
        data_dir=tokenized_data_dir,
        device=job_device(config),
    shell:
        "REPRO_JOB_GPUS={resources.gpu} python -m repro.job repro.sample --ckpt {input.ckpt} --data {params.data_dir}"
        " --tokenizer {input.tokenizer} --prepared {input.prepared} --split {params.eval[split]}"
        " --sampler-name {wildcards.sampler} --sampler-json {params.sampler:q}"
        " --nfe {wildcards.nfe} --seed {wildcards.seed} --max-examples {params.eval[max_examples]}"
        " --batch-size {params.eval[batch_size]} --threads {threads} --device {params.device}"
        " --out {output} > {log} 2>&1"
