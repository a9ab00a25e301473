"""MBR decoding: mbr_select (→ results/samples/{dataset}/{experiment}/{sampler}/nfe{nfe}/mbr{k}.jsonl):
per source, the candidate of seeds 0..k-1 with the highest summed sentence BLEU against the
others (DiffuSeq's rule); scored by score_samples like any samples file."""


rule mbr_select:
    input:
        seed_samples,
    output:
        ensure(paths.samples(draw="mbr{k}"), non_empty=True),
    log:
        paths.log("mbr_select", f"{paths.CELL}/mbr{{k}}"),
    conda:
        "../../envs/repro.yaml"
    resources:
        mem_mb=R.mem("score", 4000),
        runtime=R.runtime("score", 30),
    params:
        code=stage_digest("mbr"),
    shell:
        "python -m repro.job repro.mbr --samples {input} --out {output} > {log} 2>&1"
