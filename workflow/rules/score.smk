"""Scoring: score_samples (→ results/scores/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.json):
every metric some table or figure reads from that samples file, each tagged with its variant."""


rule score_samples:
    input:
        "results/samples/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.jsonl",
    output:
        ensure(
            "results/scores/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.json",
            non_empty=True,
        ),
    log:
        "logs/score_samples/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.log",
    benchmark:
        "benchmarks/score_samples/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.tsv"
    conda:
        "../../envs/repro.yaml"
    threads: C.resource("score", "threads", 1)
    resources:
        mem_mb=C.resource("score", "mem_mb", 4000),
        runtime=C.resource("score", "runtime", 30),
        gpu=C.resource("score", "gpu", 0),
    params:
        metrics=lambda wc: C.metrics_for(wc.dataset, wc.experiment, wc.sampler, int(wc.nfe)),
        code=stage_digest("score"),
        env=LOCK,
    shell:
        "python -m repro.score --samples {input} --metrics-json {params.metrics:q}"
        " --out {output} > {log} 2>&1"
