"""The cost plan (repro.plan): model sizes, per-job costs from the config, calibration, and the
same DAG as a dry run (one small smoke target)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repro import plan
from repro.config_file import load_config_file
from repro.methods import get_method

REPO = Path(__file__).resolve().parents[1]


def _smoke() -> dict:
    return load_config_file(REPO / "config" / "smoke.yaml")


def _tp(**kw) -> plan.Throughput:
    return plan.Throughput(**{"gpu": "x", "tflops": 100.0, "mfu_train": 0.5, "mfu_sample": 0.25, **kw})


def test_model_size_is_the_built_models():
    cfg = {"d_model": 32, "n_layers": 2, "n_heads": 2, "mlp_ratio": 4.0, "dropout": 0.0,
           "pos_emb": "rope"}
    size = plan.model_size("ar", cfg, vocab_size=100, seq_len=16)
    model = get_method("ar").build_model({**cfg, "pad_id": 0, "bos_id": 1, "eos_id": 2}, 100, 16)
    assert size.total == sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert size.compute == linear and 0 < size.compute < size.total  # the embedding is a look-up
    assert (size.n_layers, size.d_model) == (2, 32)


def test_flop_formulas():
    size = plan.ModelSize(compute=1000, total=1500, n_layers=2, d_model=8)
    assert plan.train_flops(size, tokens=10, seq_len=4) == 10 * (6 * 1000 + 6 * 2 * 4 * 8)
    one_pass = 2 * 1000 * 4 + 2 * 2 * 16 * 8
    assert plan.sample_flops(size, 3, 4, nfe=5, autoregressive=False) == 3 * 5 * one_pass
    assert plan.sample_flops(size, 3, 4, nfe=5, autoregressive=True) == 3 * one_pass
    assert plan.checkpoint_bytes(size, {"ema": [0.999, 0.9999]}) == 4 * 1500 * 3 + 4 * 1500 * 5
    assert plan.checkpoint_bytes(size, {}) == 4 * 1500 * (1 + 3)


def test_train_and_sample_costs_follow_the_config():
    cfg = _smoke()
    planner = plan.Planner(cfg, _tp(), root=Path("/nonexistent"))
    exp, ds = cfg["experiments"]["ar"], cfg["datasets"]["syn_stories"]
    job = plan.DagJob("train_model", {"dataset": "syn_stories", "experiment": "ar"}, 0)
    cost = planner.cost(job)
    train = exp["train"]
    tokens = train["steps"] * train["batch_size"] * train.get("accumulate", 1) * ds["seq_len"]
    assert cost.tokens == tokens
    size = planner.size("syn_stories", "ar")
    flops = tokens * (6 * size.compute + 6 * size.n_layers * ds["seq_len"] * size.d_model)
    assert cost.gpu_hours == pytest.approx(flops / (100e12 * 0.5) / 3600)
    assert cost.ckpt_bytes > 0 and not cost.calibrated
    # a measured step time replaces the estimate of that job only
    planner.tp.calibration = {"ar": {"syn_stories": 0.5}}
    assert planner.cost(job).gpu_hours == pytest.approx(0.5 * train["steps"] / 3600)
    assert planner.cost(job).calibrated
    other = plan.DagJob("train_model", {"dataset": "syn_code", "experiment": "ar"}, 0)
    assert not planner.cost(other).calibrated
    # sampling: eval.max_examples examples (the synthetic split is larger) of seq_len tokens
    sjob = plan.DagJob("sample_text", {"dataset": "syn_stories", "experiment": "klflow",
                                       "sampler": "basic", "nfe": "8", "seed": "0"}, 0)
    scost = planner.cost(sjob)
    n = min(ds["eval"]["max_examples"], ds["synthetic"]["size"][ds["eval"]["split"]])
    assert scost.tokens == n * ds["seq_len"]
    ksize = planner.size("syn_stories", "klflow")
    sflops = plan.sample_flops(ksize, n, ds["seq_len"], 8, autoregressive=False)
    assert scost.gpu_hours == pytest.approx(sflops / (100e12 * 0.25) / 3600)


def test_whole_split_of_an_unprepared_dataset_is_unknown_unless_given(tmp_path):
    cfg = _smoke()
    cfg["datasets"]["syn_stories"]["eval"]["max_examples"] = 0
    ds = cfg["datasets"]["syn_stories"]  # a real dataset: its split's rows are unknown until prepared
    del ds["synthetic"]
    ds.update(loader="jsonl", local={"train": "stories.jsonl"}, fields={"text": "story"})
    sjob = plan.DagJob("sample_text", {"dataset": "syn_stories", "experiment": "klflow",
                                       "sampler": "basic", "nfe": "8", "seed": "0"}, 1)
    cost = plan.Planner(cfg, _tp(), root=tmp_path).cost(sjob)
    assert cost.gpu_hours is None and "--examples syn_stories=N" in cost.note
    given = plan.Planner(cfg, _tp(), root=tmp_path, examples={"syn_stories": 10}).cost(sjob)
    assert given.tokens == 10 * cfg["datasets"]["syn_stories"]["seq_len"]
    rows = plan.summarise([cost, given])
    assert rows[-1]["stage"] == "total" and rows[-1]["unknown"] == 1 and rows[-1]["gpu_jobs"] == 2


def test_calibration_file(tmp_path):
    path = tmp_path / "gpu_check.json"
    block = {"gpu": "NVIDIA H100", "valid": True, "seconds_per_step": {"ar": {"qqp": 0.2, "x": None}}}
    path.write_text(json.dumps({"rows": [], "cost_calibration": block}))
    assert plan.read_calibration(path) == ("NVIDIA H100", {"ar": {"qqp": 0.2, "x": None}})
    for bad, message in (({**block, "valid": False}, "valid is false"),
                         ({**block, "seconds_per_step": {"ar": {"qqp": -1}}}, "ar.qqp"),
                         ({"gpu": "x"}, "no cost_calibration")):
        path.write_text(json.dumps({"cost_calibration": bad}))
        with pytest.raises(plan.PlanError, match=message):
            plan.read_calibration(path)


def test_plan_lists_the_dry_runs_jobs(tmp_path):
    """`python -m repro.plan` builds the DAG `snakemake -n` builds: the same jobs per rule."""
    from tests.workflow.conftest import Project, jobs_by_rule

    project = Project.copy(tmp_path)
    target = "results/tables/table1.csv"
    dry = jobs_by_rule(project.dry_run(target, "--configfile", "config/smoke.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "repro.plan", target, "--configfile", "config/smoke.yaml",
         "--gpu", "h100", "--json"],
        cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    stages = {r["stage"]: r for r in out["stages"]}
    assert {s: r["jobs"] for s, r in stages.items() if s != "total"} == {
        rule: len(jobs) for rule, jobs in dry.items()}
    assert stages["total"]["jobs"] == sum(len(j) for j in dry.values())
    assert stages["train_model"]["gpu_hours"] > 0 and stages["train_model"]["tokens"] > 0
    assert out["throughput"]["tflops"] == plan.GPU_TFLOPS["h100"]


def test_the_small_real_data_config_fits_three_gpu_hours(tmp_path):
    """config/small.yaml builds the whole catalogue's DAG, and its cost plan on one H100 (the
    FLOP estimate at the default MFU) stays within the 3 hours its docs promise."""
    from tests.workflow.conftest import Project

    project = Project.copy(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "repro.plan", "all", "--configfile", "config/small.yaml",
         "--gpu", "h100", "--json"],
        cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = {r["stage"]: r for r in json.loads(proc.stdout)["stages"]}
    assert stages["train_model"]["jobs"] >= 25 and stages["make_table"]["jobs"] == 7
    assert not stages["total"].get("unknown")  # every sampling job's size is known
    assert 1.0 < stages["total"]["gpu_hours"] <= 3.0
