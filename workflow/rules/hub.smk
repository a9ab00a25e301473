"""Hub files for offline compute nodes: download_hub (→ resources/hf/{hub}.json, a manifest; the
files go to the project cache resources/hf/hub). A local rule (login node): pretrained tokenizers
(train_tokenizer's input) and BERTScore models (score_samples' input); every job then reads them
with the hub offline (repro.workflow.hub.OFFLINE_PREFIX). Datasets and judges have their own download
rules (data.smk, judge.smk)."""

HUB = hub_repos(config)


rule download_hub:
    output:
        paths.hub_marker(),
    log:
        paths.log("download_hub", "{hub}"),
    conda:
        "../../envs/repro.yaml"
    params:
        repo=lambda wc: HUB[wc.hub],
    shell:
        "env HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 TRANSFORMERS_OFFLINE=0 python -m repro.cluster fetch --id {params.repo[id]}"
        " --revision {params.repo[revision]} --kind {params.repo[kind]}"
        " --out {output} > {log} 2>&1"
