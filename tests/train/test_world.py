"""Cluster-facing parts of the train stage: the world check, GPU visibility, the stop margin.

The tiny fake method and toy data of tests/train/toy.py are reused; everything runs on CPU in a
few seconds. The same paths run on a live SLURM cluster in tests/workflow/test_slurm_live.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from repro.io import InputError
from repro.train import cli, config, world
from repro.train import run as train_run

from .toy import final_weights, run_cfg

WORLD = dict(global_rank=0, local_rank=0, node_rank=0, n_rows=600, batch_size=32)


def test_check_world_logs_ranks_and_batches_per_epoch():
    line = world.check_world(devices=2, num_nodes=1, world_size=2,
                                env={"SLURM_NTASKS": "1", "SLURM_JOB_ID": "42"}, **WORLD)
    for part in ("world_size=2", "global_rank=0", "local_rank=0", "node_rank=0", "devices=2",
                 "slurm_job_id=42", "slurm_ntasks=1", "global_batch=64",
                 "batches_per_epoch=10", "rows_per_rank_per_epoch=320"):
        assert part in line, part
    line = world.check_world(devices=4, num_nodes=2, world_size=8,
                                env={"SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "2"}, **WORLD)
    assert "batches_per_epoch=3" in line  # 600 rows / (32 x 8)


def test_check_world_refuses_the_half_data_trap():
    # Lightning detected SLURM inside the jobstep's `srun -n1` and ran one rank for 2 devices
    with pytest.raises(InputError, match=r"Lightning runs 1 rank\(s\) but --devices 2"):
        world.check_world(devices=2, num_nodes=1, world_size=1, env={"SLURM_NTASKS": "1"},
                             **WORLD)
    with pytest.raises(InputError, match="SLURM started 4 tasks but the run expects 8"):
        world.check_world(devices=4, num_nodes=2, world_size=8, env={"SLURM_NTASKS": "4"},
                             **WORLD)
    with pytest.raises(InputError, match="SLURM allocated 3 node"):
        world.check_world(devices=4, num_nodes=2, world_size=8,
                             env={"SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "3"}, **WORLD)


def test_visible_gpus_are_checked():
    world.check_visible_gpus("cpu", 4)  # CPU runs: nothing to check
    world.check_visible_gpus("gpu", 2, cuda_count=4)
    with pytest.raises(InputError, match="--devices 4 but this process sees 2 GPU"):
        world.check_visible_gpus("gpu", 4, cuda_count=2)


def test_stop_margin():
    assert config.time_budget_seconds(10, 90) == pytest.approx(510.0)
    assert config.time_budget_seconds(1, 59) == pytest.approx(1.0)
    assert config.time_budget_seconds(10) == pytest.approx(540.0)  # the default margin
    with pytest.raises(InputError, match="--stop-margin-s 60"):
        config.time_budget_seconds(1, 60)


def test_stop_margin_exit_75_then_resume_is_bitwise(reference, data_dir, tmp_path, caplog):
    """The real time-budget path (no monkeypatching): a 1-minute job with a 59.99 s margin
    stops on its first optimizer step, exits 75; the rerun resumes and ends bitwise equal."""
    ref, _ = reference
    out = tmp_path / "margin" / "model.ckpt"
    args = [f"--data={data_dir}", f"--out={out}", "--max-minutes=1", "--stop-margin-s=59.99",
            "--config-json", json.dumps(run_cfg())]
    assert cli.main(args) == cli.EXIT_INCOMPLETE
    assert not out.exists() and (out.parent / "_work" / "last.ckpt").exists()
    with caplog.at_level("INFO", logger="repro.train"):
        assert cli.main(args[:2] + ["--max-minutes=30", *args[4:]]) == 0
    assert "resuming from" in caplog.text and "steps=6/6 (from 1)" in caplog.text
    assert "world: world_size=1" in caplog.text
    a, b = final_weights(ref), final_weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_stop_margin_fails_before_training(fake_method, data_dir, tmp_path):
    out = tmp_path / "bad" / "model.ckpt"
    with pytest.raises(InputError, match="--stop-margin-s 120"):
        train_run.train(data_dir, out, run_cfg(), max_minutes=1, stop_margin_s=120)
    assert not (out.parent / "_work").exists()


@pytest.mark.parametrize(
    ("env", "devices", "nodes", "expected"),
    [
        ({}, 1, 1, []),
        ({}, 2, 1, ["LightningEnvironment"]),
        ({"SLURM_NTASKS": "1"}, 1, 1, ["SLURMEnvironment"]),  # jobstep's srun -n1, one GPU
        ({"SLURM_NTASKS": "1"}, 4, 1, ["LightningEnvironment"]),  # srun -n1, Lightning spawns 4
        ({"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4"}, 4, 2, ["SLURMEnvironment"]),  # MPI
    ],
)
def test_cluster_plugins_policy(monkeypatch, env, devices, nodes, expected):
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    plugins = world.cluster_plugins(devices, nodes)
    assert [type(p).__name__ for p in plugins] == expected
    for p in plugins:
        if type(p).__name__ == "SLURMEnvironment":
            assert p.auto_requeue is False


def test_cluster_plugins_rejects_bad_geometry(monkeypatch):
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    with pytest.raises(InputError, match="multi-node training needs resources mpi='srun'"):
        world.cluster_plugins(4, 2)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    with pytest.raises(InputError, match="SLURM_NTASKS=4 but --devices 2"):
        world.cluster_plugins(2, 1)
