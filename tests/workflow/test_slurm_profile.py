"""The SLURM profile without a cluster: settings, dry runs and the exact sbatch calls it generates.

``test_table3_sbatch_calls`` runs the real executor plugin on the paper config's
``results/tables/table3.csv`` with fake SLURM commands on PATH (:func:`write_fake_slurm`: sbatch
records its arguments and refuses the job). The upstream files are stand-ins written by the test,
so the first jobs Snakemake submits are exactly training, sampling and (BERTScore) scoring jobs.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import pytest
import yaml

from .conftest import REPO, Project
from .slurm_support import comment_of, recorded_calls, write_fake_slurm

PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
TEST_PROFILE = REPO / "workflow" / "profiles" / "slurm-test" / "config.yaml"
SITE = {
    "REPRO_SLURM_ACCOUNT": "myacct",
    "REPRO_CPU_PARTITION": "cpuq",
    "REPRO_GPU_PARTITION": "gpuq",
    "REPRO_GPU_CONSTRAINT": "a100|h100",
    "REPRO_GPU_MODEL": "a100",
}

pytestmark = pytest.mark.slurm  # sbatch calls of the profile (a fake sbatch): not in test-fast


def test_profile_settings():
    p = yaml.safe_load(PROFILE.read_text())
    assert p["executor"] == "slurm"
    for key in ("latency-wait", "keep-going", "rerun-incomplete", "retries",
                "max-jobs-per-timespan", "jobs"):
        assert key in p, key
    assert p["keep-going"] is True and p["rerun-incomplete"] is True and p["retries"] >= 1
    d = p["default-resources"]
    assert d["slurm_account"] == "$REPRO_SLURM_ACCOUNT"
    assert d["slurm_partition"] == "$REPRO_CPU_PARTITION"
    assert "cpus_per_task" not in d and "cpus_per_task" not in str(p.get("set-resources", ""))
    # the accounting switch is documented in the profile
    assert "slurm-status-command: squeue" in PROFILE.read_text()
    # downloads (the only network access) and reports run on the login node
    local = (REPO / "Snakefile").read_text().split("localrules:")[1].split("\n\n")[0]
    for rule in ("download_dataset", "download_hub", "download_judge", "make_table", "make_figure"):
        assert f"    {rule}," in local, rule
    t = yaml.safe_load(TEST_PROFILE.read_text())
    assert t["slurm-status-command"] == "squeue" and t["slurm-init-seconds-before-status-checks"] < 10
    assert "default-resources" not in t and "set-resources" not in t  # would replace the profile's


@pytest.fixture(scope="module")
def paper(tmp_path_factory) -> Project:
    return Project.copy(tmp_path_factory.mktemp("paper-slurm"))


def _env(project: Project, **extra: str) -> dict[str, str]:
    env = project.env()
    for k in SITE:
        env.pop(k, None)
    env.update(extra)
    return env


def _dry_jobs(project: Project, env: dict, target: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", target],
                          cwd=project.root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Using profile slurm" in proc.stdout + proc.stderr
    jobs, cur = [], None
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.match(r"^(?:local)?rule (\w+):\s*$", line.strip())
        if m:
            cur = {"rule": m.group(1), "output": [], "resources": {}, "wildcards": {}}
            jobs.append(cur)
        elif cur is not None and line.startswith("    "):
            key, _, value = line.strip().partition(": ")
            if key == "output":
                cur["output"] = value.split(", ")
            elif key == "resources":
                cur["resources"] = dict(kv.split("=", 1) for kv in value.split(", ") if "=" in kv)
            elif key == "wildcards":
                cur["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", "))
    return jobs


def test_fresh_clone_dry_run_requests_gpus(paper):
    """`snakemake --profile slurm -n results/tables/table3.csv` with no site variables set."""
    jobs = _dry_jobs(paper, _env(paper), "results/tables/table3.csv")
    by_rule: dict[str, list[dict]] = {}
    for j in jobs:
        by_rule.setdefault(j["rule"], []).append(j)
    for rule in ("train_model", "sample_text", "score_samples"):
        assert by_rule[rule], rule
        for j in by_rule[rule]:
            assert j["resources"]["gpu"] == "1", (rule, j["resources"])
            assert j["resources"]["slurm_partition"] == "$REPRO_GPU_PARTITION"
    train = by_rule["train_model"][0]["resources"]
    assert (train["nodes"], train["mem_mb"], train["runtime"]) == ("1", "64000", "720")
    assert all(r in by_rule for r in ("download_dataset", "download_hub", "tokenize"))
    for j in by_rule["tokenize"]:
        assert j["resources"]["slurm_partition"] == "$REPRO_CPU_PARTITION"
        assert "gpu" not in j["resources"]


def _make_ready(project: Project, jobs: list[dict]) -> None:
    """Write stand-ins for every upstream output, wmt14's models and some of its samples, so that
    the ready jobs are lamini's trainings, wmt14's sampling of seeds 3-4 and scoring of 0-2."""
    order = ["download_dataset", "download_hub", "prepare_dataset", "train_tokenizer", "tokenize",
             "train_model", "sample_text"]
    t0 = 1_700_000_000
    for j in jobs:
        if j["rule"] not in order:
            continue
        wc = j["wildcards"]
        if j["rule"] == "train_model" and wc["dataset"] != "wmt14":
            continue
        if j["rule"] == "sample_text" and (wc["dataset"] != "wmt14" or wc["seed"] in ("3", "4")):
            continue
        stamp = t0 + 10 * order.index(j["rule"])
        for out in j["output"]:
            path = project.root / out
            if j["rule"] == "download_dataset":
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("stand-in\n")
            os.utime(path, (stamp, stamp))


#: training variants added to the copy's config (one table3 row each, on lamini) and the flags
#: their sbatch call must carry
VARIANTS = {
    "ar_150m": (None, ["--gpus=a100:1", "--nodes=1", "--cpus-per-task=8", "--mem", "64000"]),
    "ar_4gpu": ({"gpu": 4, "threads": 32, "mem_mb": 256000},
                ["--gpus=a100:4", "--nodes=1", "--cpus-per-task=32", "256000"]),
    "ar_2x4gpu": ({"gpu": 4, "nodes": 2},
                  ["--nodes=2", "--ntasks-per-node=4", "--gres=gpu:a100:4", "--cpus-per-task=2"]),
}


def test_table3_sbatch_calls(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    rows = cfg["tables"]["table3"]["rows"]
    base_row = next(r for r in rows if r["dataset"] == "lamini" and r["experiment"] == "ar_150m")
    for name, (override, _) in VARIANTS.items():
        if override is None:
            continue
        cfg["experiments"][name] = {"extends": "ar_150m", "resources": copy.deepcopy(override)}
        rows.append({**copy.deepcopy(base_row), "label": f"test {name}", "experiment": name})
    project = Project.copy(tmp_path / "p", cfg, "config.yaml")
    bin_dir, record = tmp_path / "fake-bin", tmp_path / "sbatch.calls"
    write_fake_slurm(bin_dir, record)
    env = _env(project, **SITE)
    env["PATH"] = str(bin_dir) + os.pathsep + env["PATH"]
    target = "results/tables/table3.csv"
    _make_ready(project, _dry_jobs(project, env, target))
    proc = subprocess.run([sys.executable, "-m", "snakemake", target, "--profile", "slurm",
                           "--latency-wait", "1", "--retries", "0"],
                          cwd=project.root, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "fake sbatch" in out, out[-4000:]
    calls = {}
    for call in recorded_calls(record):
        calls.setdefault(comment_of(call), call)
    by_rule: dict[str, list[list[str]]] = {}
    for comment, call in calls.items():
        rule = re.match(r"rule_([a-z_]+?)(_wildcards_|$)", comment).group(1)
        by_rule.setdefault(rule, []).append(call)
    assert sorted(by_rule) == ["sample_text", "score_samples", "train_model"], sorted(calls)
    for rule, rule_calls in by_rule.items():
        for call in rule_calls:
            text = " ".join(call)
            assert "-A myacct" in text and "-p gpuq" in text, text
            assert "-C a100|h100" in text, text
            assert "--cpus-per-task=" in text and "--ntasks-per-gpu" not in text, text
            if rule != "train_model":
                assert "--gpus=a100:1" in call and "--nodes=1" not in call, text
    for name, (override, flags) in VARIANTS.items():
        (train,) = [c for c in by_rule["train_model"]
                    if comment_of(c) == f"rule_train_model_wildcards_lamini_{name}"]
        text = " ".join(train)
        for flag in flags:
            assert flag in train, (name, flag, text)
        assert "-t 720" in text
        if override and override.get("nodes", 1) > 1:  # the MPI path: no --gpus, no --ntasks
            assert "--gpus=" not in text and "--ntasks=" not in text, text
    score = " ".join(by_rule["score_samples"][0])
    assert "--mem 32000" in score and "-t 120" in score
