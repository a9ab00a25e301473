"""Training: train_model (→ results/train/{dataset}/{experiment}/model.ckpt). Resumable state
(Lightning last.ckpt, CSV logs) lives in the undeclared _work/ beside it, which Snakemake never
deletes; a job stopped by its time limit exits 75 and the retry resumes (docs/pipeline.md §3.2).
Resources per experiment (GPUs, nodes, memory, time): repro.workflow.resources.train_resources."""


rule train_model:
    input:
        data=lambda wc: C.tokenized_inputs(wc.dataset, wc.experiment, ("train", "validation")),
        extra=lambda wc: C.train_extra_inputs(wc.dataset, wc.experiment),
    output:
        ckpt=paths.ckpt(),
    log:
        paths.log("train_model", "{dataset}/{experiment}"),
    benchmark:
        paths.benchmark("train_model", "{dataset}/{experiment}")
    # critical path (DiffuSeq before the FM runs reading its embeddings), then longest first
    priority: lambda wc: P.train(wc.dataset, wc.experiment)
    # Retries belong to the main Snakemake process (each one a new SLURM job with more runtime).
    # Inside a SLURM job the jobstep honours a rule's `retries` too and would restart the job in
    # the same, almost used-up allocation: none there (workflow.remote_exec).
    retries: 0 if workflow.remote_exec else C.resource("train", "retries", 0)
    conda:
        "../../envs/repro.yaml"
    threads: R.train_threads
    resources:
        **R.train_site(),
        # resources.train overridden by experiments.<name>.resources (repro.workflow.resources). One node:
        # gpu=G, nodes=1 (the jobstep's srun -n1 holds the G GPUs, Lightning spawns G ranks);
        # several nodes: the MPI path (mpi, tasks_per_node, gres, cpus_per_task) and the
        # `launcher` srun below (docs/pipeline.md §3.3). None leaves a resource out.
        mem_mb=R.train_mem,
        runtime=R.train_runtime,
        gpu=R.train_slurm("gpu"),
        nodes=R.train_slurm("nodes"),
        mpi=R.train_slurm("mpi"),
        tasks_per_node=R.train_slurm("tasks_per_node"),
        gres=R.train_slurm("gres"),
        cpus_per_task=R.train_slurm("cpus_per_task"),
        # not SLURM flags: read by the shell below; resources (not params) so that changing
        # them never makes a trained model stale
        launcher=R.train_launcher,
        stop_margin_s=R.train_stop_margin,
    params:
        cfg=lambda wc: C.train_params(wc.dataset, wc.experiment),
        code=lambda wc: C.method_digest(wc.experiment, "train"),
        data_dir=tokenized_data_dir,
        accelerator=config.get("accelerator", "auto"),
        # ranks per node and nodes: the global batch is batch_size x devices x nodes
        devices=lambda wc: R.train(wc)["devices"],
        nodes=lambda wc: R.train(wc)["nodes"],
    shell:
        "{resources.launcher}python -m repro.job repro.train --data {params.data_dir} --out {output.ckpt}"
        " --config-json {params.cfg:q} --threads {threads} --max-minutes {resources.runtime}"
        " --stop-margin-s {resources.stop_margin_s} --accelerator {params.accelerator}"
        " --devices {params.devices} --num-nodes {params.nodes} > {log} 2>&1"


rule export_embeddings:
    """A trained DiffuSeq's (EMA) word embeddings, frozen input of FM-seq2seq (methods.md §2.2)."""
    input:
        ckpt=paths.ckpt(),
    output:
        npy=paths.embeddings(),
        info=paths.embeddings(ext="json"),
    log:
        paths.log("export_embeddings", "{dataset}/{experiment}"),
    priority: lambda wc: P.export(wc.dataset, wc.experiment)
    conda:
        "../../envs/repro.yaml"
    params:
        code=lambda wc: C.method_digest(wc.experiment, "export_embeddings"),
    shell:
        "python -m repro.job repro.export_embeddings --ckpt {input.ckpt} --out {output.npy} > {log} 2>&1"
