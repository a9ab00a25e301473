"""Model analyses: analyse_loss_vs_t (→ results/analysis/{dataset}/{experiment}/loss_vs_t.json),
the training loss of a trained model on validation data at fixed t (FM-seq2seq Fig. 8)."""


rule analyse_loss_vs_t:
    input:
        ckpt=paths.ckpt(),
        data=lambda wc: C.tokenized_inputs(wc.dataset, wc.experiment, ("validation",)),
    output:
        paths.analysis(),
    log:
        paths.log("analyse_loss_vs_t", "{dataset}/{experiment}"),
    conda:
        "../../envs/repro.yaml"
    threads: C.resource("sample", "threads", 1)
    resources:
        **R.stage_site("sample"),
        mem_mb=R.mem("sample", 8000),
        runtime=R.runtime("sample", 60),
        gpu=C.resource("sample", "gpu", 0),
    params:
        opts=lambda wc: C.analysis_options(wc.dataset),
        code=lambda wc: C.method_digest(wc.experiment, "analysis"),
        data_dir=tokenized_data_dir,
        device=job_device(config),
    shell:
        "REPRO_JOB_GPUS={resources.gpu} python -m repro.job repro.analysis loss-vs-t --ckpt {input.ckpt} --data {params.data_dir}"
        " --split validation --bins {params.opts[bins]} --max-examples {params.opts[max_examples]}"
        " --t-max {params.opts[t_max]} --batch-size {params.opts[batch_size]} --seed {params.opts[seed]}"
        " --threads {threads}"
        " --device {params.device} --out {output} > {log} 2>&1"
