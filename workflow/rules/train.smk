"""Training: train_model (→ results/train/{dataset}/{experiment}/model.ckpt). Resumable state
(Lightning last.ckpt, CSV logs) lives in the undeclared _work/ beside it, which Snakemake never
deletes; a job stopped by its time limit exits 75 and the retry resumes (pipeline.md §7.3)."""


rule train_model:
    input:
        data=lambda wc: C.tokenized_files(
            wc.dataset, C.layout(wc.dataset, wc.experiment), ("train", "validation")
        ),
        extra=lambda wc: C.train_extra_inputs(wc.dataset, wc.experiment),
    output:
        ckpt="results/train/{dataset}/{experiment}/model.ckpt",
    log:
        "logs/train_model/{dataset}/{experiment}.log",
    benchmark:
        "benchmarks/train_model/{dataset}/{experiment}.tsv"
    retries: C.resource("train", "retries", 0)
    conda:
        "../../envs/repro.yaml"
    threads: C.resource("train", "threads", 1)
    resources:
        mem_mb=C.resource("train", "mem_mb", 8000),
        runtime=lambda wc, attempt: C.resource("train", "runtime", 60) * min(attempt, 2),
        gpu=C.resource("train", "gpu", 0),
        nodes=1,
    params:
        cfg=lambda wc: C.train_params(wc.dataset, wc.experiment),
        code=lambda wc: C.method_digest(wc.experiment, "train"),
        data_dir=lambda wc, input: input.data[-1].rsplit("/", 1)[0],
        accelerator=config.get("accelerator", "auto"),
        devices=max(C.resource("train", "gpu", 0), 1),
    shell:
        "python -m repro.train --data {params.data_dir} --out {output.ckpt}"
        " --config-json {params.cfg:q} --threads {threads} --max-minutes {resources.runtime}"
        " --accelerator {params.accelerator} --devices {params.devices} > {log} 2>&1"


rule export_embeddings:
    """A trained DiffuSeq's (EMA) word embeddings, frozen input of FM-seq2seq (methods.md §2.2)."""
    input:
        ckpt="results/train/{dataset}/{experiment}/model.ckpt",
    output:
        npy="results/embeddings/{dataset}/{experiment}/embeddings.npy",
        info="results/embeddings/{dataset}/{experiment}/embeddings.json",
    log:
        "logs/export_embeddings/{dataset}/{experiment}.log",
    conda:
        "../../envs/repro.yaml"
    params:
        code=lambda wc: C.method_digest(wc.experiment, "export_embeddings"),
    shell:
        "python -m repro.export_embeddings --ckpt {input.ckpt} --out {output.npy} > {log} 2>&1"
