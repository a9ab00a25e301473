"""Scoring: score_samples (→ results/scores/{dataset}/{experiment}/{sampler}/nfe{nfe}/{draw}.json,
draw = seed<s> or mbr<k>): every per-file metric some table or figure reads from that samples
file; score_group (→ …/group<k>.json): group metrics (self-BLEU, div-4) over seeds 0..k-1.
Every value is tagged with its variant. Judges of generative perplexity are inputs."""


rule score_samples:
    input:
        samples=paths.samples(),
        judges=lambda wc: C.judge_inputs(R.score_metrics(wc)),
        hub=R.score_hub_inputs,
    output:
        ensure(paths.scores(), non_empty=True),
    log:
        paths.log("score_samples", f"{paths.CELL}/{{draw}}"),
    benchmark:
        paths.benchmark("score_samples", f"{paths.CELL}/{{draw}}")
    conda:
        "../../envs/repro.yaml"
    threads: C.resource("score", "threads", 1)
    resources:
        **R.score_site(),
        mem_mb=R.mem("score", 4000),
        runtime=R.runtime("score", 30),
        # resources.score.gpu only for jobs whose metrics run a model (BERTScore, judges)
        gpu=R.score_gpu,
    params:
        metrics=lambda wc: C.metrics_for(
            wc.dataset, wc.experiment, wc.sampler, int(wc.nfe), wc.draw
        ),
        code=stage_digest("score"),
        env=LOCK,
    shell:
        "REPRO_JOB_GPUS={resources.gpu} python -m repro.job repro.score --samples {input.samples} --metrics-json {params.metrics:q}"
        " --out {output} --threads {threads} > {log} 2>&1"


rule score_group:
    input:
        seed_samples,
    output:
        ensure(paths.scores(draw="group{k}"), non_empty=True),
    log:
        paths.log("score_group", f"{paths.CELL}/group{{k}}"),
    conda:
        "../../envs/repro.yaml"
    threads: 1
    resources:
        mem_mb=R.mem("score", 4000),
        runtime=R.runtime("score", 30),
    params:
        metrics=lambda wc: C.metrics_for(
            wc.dataset, wc.experiment, wc.sampler, int(wc.nfe), f"group{wc.k}"
        ),
        code=stage_digest("score"),
        env=LOCK,
    shell:
        "python -m repro.job repro.score --samples {input} --metrics-json {params.metrics:q}"
        " --out {output} > {log} 2>&1"
