"""Unit tests of :mod:`repro.workflow.resources`: per-job SLURM resources, site settings."""

from __future__ import annotations

import json

import pytest

from repro.workflow import resources

TRAIN = {"train": {"threads": 8, "mem_mb": 64000, "runtime": 720, "gpu": 1, "retries": 4}}


def test_train_resources_defaults_and_overrides():
    r = resources.train_resources(TRAIN, {"method": "ar"})
    assert r == {"threads": 8, "mem_mb": 64000, "runtime": 720, "gpu": 1, "nodes": 1,
                 "devices": 1, "world": 1, "stop_margin_s": None}
    r = resources.train_resources(TRAIN, {"resources": {"gpu": 4, "threads": 32}})
    assert (r["gpu"], r["devices"], r["world"], r["threads"]) == (4, 4, 4, 32)
    r = resources.train_resources(TRAIN, {"resources": {"gpu": 4, "nodes": 2}})
    assert (r["devices"], r["nodes"], r["world"]) == (4, 2, 8)
    cpu = resources.train_resources({"train": {"gpu": 0}}, {"resources": {"devices": 2}})
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
    with pytest.raises(resources.ClusterConfigError) as err:
        resources.train_resources(TRAIN, {"resources": over})
    assert message in str(err.value)


def test_single_node_uses_the_jobstep_srun_and_gpus():
    tr = resources.train_resources(TRAIN, {"resources": {"gpu": 4}})
    s = resources.train_slurm_resources(tr)
    assert s == {"gpu": 4, "nodes": 1, "mpi": None, "tasks_per_node": None, "gres": None,
                 "cpus_per_task": None}
    assert resources.train_launcher(tr) == ""  # no srun of our own: Lightning spawns the ranks
    assert resources.train_gpus(tr) == 4


def test_multi_node_takes_the_mpi_path(monkeypatch):
    monkeypatch.setenv("REPRO_GPU_MODEL", "h100")
    tr = resources.train_resources(TRAIN, {"resources": {"gpu": 4, "nodes": 2, "threads": 32}})
    s = resources.train_slurm_resources(tr)
    assert s == {"gpu": None, "nodes": 2, "mpi": "srun", "tasks_per_node": 4,
                 "gres": "gpu:h100:4", "cpus_per_task": 8}
    launcher = resources.train_launcher(tr)
    assert launcher.startswith("srun --nodes=2 --ntasks-per-node=4 --cpus-per-task=8")
    assert "--gpus-per-node=4" in launcher and launcher.endswith(" ")
    assert resources.train_gpus(tr) == 8


def test_site_resources_follow_the_jobs_gpus(monkeypatch):
    monkeypatch.setenv("REPRO_GPU_PARTITION", "gpuq")
    monkeypatch.setenv("REPRO_CPU_PARTITION", "cpuq")
    monkeypatch.setenv("REPRO_GPU_CONSTRAINT", "a100|h100")
    monkeypatch.delenv("REPRO_GPU_MODEL", raising=False)
    res = resources.site_resources(lambda wc: wc)
    assert [res[k](1) for k in ("slurm_partition", "constraint", "gpu_model")] == [
        "gpuq", "a100|h100", None]
    assert [res[k](0) for k in ("slurm_partition", "constraint", "gpu_model")] == [
        "cpuq", None, None]
    monkeypatch.delenv("REPRO_GPU_PARTITION")
    assert res["slurm_partition"](2) == "$REPRO_GPU_PARTITION"  # sbatch fails naming it
    monkeypatch.setenv("REPRO_GPU_MODEL", "a100")
    assert res["gpu_model"](1) == "a100" and res["gpu_model"](0) is None
    gres_jobs = resources.site_resources(lambda wc: 4, model_via_gpus=lambda wc: wc == "one-node")
    assert gres_jobs["gpu_model"]("one-node") == "a100"
    assert gres_jobs["gpu_model"]("two-nodes") is None  # the model is in the gres


def test_resources_grow_with_the_attempt():
    assert [resources.scaled(1000, a) for a in (1, 2, 3)] == [1000, 2000, 3000]
    assert [resources.scaled(60, a, cap=2) for a in (1, 2, 3)] == [60, 120, 120]


def test_score_gpus_only_for_model_metrics():
    cpu = json.dumps({"bleu": {"kind": "bleu_klflow"}})
    bert = json.dumps({"bleu": {"kind": "bleu_klflow"}, "bs": {"kind": "bertscore"}})
    bert_cpu = json.dumps({"bs": {"kind": "bertscore", "device": "cpu"}})
    ppl = json.dumps({"ppl": {"kind": "gen_ppl", "judge": "resources/judges/gpt2"}})
    assert resources.score_gpus(cpu, 1) == 0
    assert resources.score_gpus(bert, 1) == 1 and resources.score_gpus(ppl, 2) == 2
    assert resources.score_gpus(bert_cpu, 1) == 0 and resources.score_gpus(bert, 0) == 0
