"""The pipeline on a live one-node SLURM cluster (slurmctld + slurmd on localhost, no GPUs).

``slurm_cluster.start()`` installs Debian's slurm-wlm and munge when missing (root) and starts the
daemons; they are stopped when the module ends. Without root/apt the tests are skipped with the
reason — unless ``REPRO_REQUIRE_SLURM=1`` (set by .ci/run), which turns that into a failure.

Every run uses the project's real profile plus the test overlay profile
(``--profile slurm --profile workflow/profiles/slurm-test``: squeue status, fast checks) on the
small overlay config of :mod:`slurm_support` — a slice of the smoke DAG. The reference is a local
run of the same config. Tests:

* the slice goes through sbatch (job ids in Snakemake's output, SLURM logs, ``scontrol``; the
  training logs its SLURM job id and a world of 2 ranks) and its samples, model and table are
  identical to the local run's;
* a training job scancelled mid-run is resubmitted by Snakemake, resumes from ``_work/last.ckpt``
  and ends with the model and table of the uninterrupted run;
* a training job that reaches its time budget exits 75, is resubmitted with twice the runtime and
  resumes: the final model equals the uninterrupted one bitwise;
* scoring jobs killed for memory leave the finished samples in place: the rerun resamples
  nothing, retries the scoring with twice the memory, and the table equals the reference.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from . import slurm_cluster
from .conftest import Project
from .slurm_support import (
    DATASET,
    FAULT_EXP,
    NFE,
    SEEDS,
    SLICE_EXP,
    model_path,
    slice_config,
    slurm_env,
    submissions,
    table_target,
    train_log,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

CONFIG = "slurm-test.yaml"
PROFILE_ARGS = ("--profile", "slurm", "--profile", "workflow/profiles/slurm-test")
RUN_TIMEOUT = 600


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster():
    try:
        c = slurm_cluster.start()
    except slurm_cluster.ClusterUnavailable as err:
        if os.environ.get("REPRO_REQUIRE_SLURM"):
            pytest.fail(f"REPRO_REQUIRE_SLURM is set but the test cluster is unavailable: {err}")
        pytest.skip(f"no live SLURM test cluster: {err}")
    yield c
    slurm_cluster.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Project:
    """The overlay config run locally (no SLURM): both tables, uninterrupted trainings."""
    project = Project.copy(tmp_path_factory.mktemp("slurm-ref"), slice_config(), CONFIG)
    project.snakemake(
        table_target("slurm_slice"), table_target("slurm_faults"),
        "--profile", "workflow/profiles/local", "--cores", "2", "--configfile", f"config/{CONFIG}",
        timeout=RUN_TIMEOUT,
    )
    return project


@pytest.fixture(scope="module")
def slice_run(cluster, tmp_path_factory) -> tuple[Project, str]:
    """The slice table built through the SLURM profile from scratch."""
    project = Project.copy(tmp_path_factory.mktemp("slurm-run"), slice_config(), CONFIG)
    proc = run_slurm(project, table_target("slurm_slice"))
    return project, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------------- helpers


def slurm_cmd(*targets: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *targets, *PROFILE_ARGS,
            "--configfile", f"config/{CONFIG}"]


def slurm_project_env(project: Project) -> dict[str, str]:
    return {**project.env(), **slurm_env(), "SLURM_CONF": str(slurm_cluster.CONF)}


def run_slurm(project: Project, *targets: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(slurm_cmd(*targets), cwd=project.root, env=slurm_project_env(project),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    out = proc.stdout + proc.stderr
    (project.root / f"snakemake-{int(time.time() * 1000)}.out").write_text(out)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake --profile slurm failed ({proc.returncode}):\n{out[-8000:]}")
    return proc


def clone(project: Project, dest: Path) -> Project:
    """A copy of a project with its results and Snakemake metadata (not its SLURM logs)."""
    shutil.copytree(project.root, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("slurm_logs", "snakemake-*.out"))
    return Project(dest)


def jobs_by_rule(output: str) -> dict[str, list[str]]:
    """Snakemake job ids per rule (from the job headers of Snakemake's output)."""
    out: dict[str, list[str]] = {}
    rule = None
    for line in output.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):\s*$", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+jobid: (\d+)\s*$", line)
        if m and rule:
            out.setdefault(rule, []).append(m.group(1))
            rule = None
    return out


def slurm_ids_of(output: str, rule: str) -> list[str]:
    """SLURM job ids of every submission (attempts included) of ``rule``'s jobs, in order."""
    ids = set(jobs_by_rule(output).get(rule, []))
    return [slurm for job, slurm, _ in submissions(output) if job in ids]


def scontrol(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                         check=True).stdout
    return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)


def samples_without_timing(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in rows:
        r.pop("wall_seconds", None)
    return rows


def assert_same_model(a: Path, b: Path) -> None:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert x["step"] == y["step"]
    assert x["state_dict"].keys() == y["state_dict"].keys()
    for k in x["state_dict"]:
        assert torch.equal(x["state_dict"][k], y["state_dict"][k]), k


def assert_same_outputs(ref: Project, run: Project, table: str, exp: str) -> None:
    assert_same_model(ref.root / model_path(exp), run.root / model_path(exp))
    for seed in SEEDS:
        rel = f"results/samples/{DATASET}/{exp}/ancestral/nfe{NFE}/seed{seed}.jsonl"
        assert samples_without_timing(ref.root / rel) == samples_without_timing(run.root / rel)
    csv = table_target(table)
    assert (ref.root / csv).read_text() == (run.root / csv).read_text()


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended before {what}: {proc.communicate()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# ----------------------------------------------------------------------------------- tests


def test_slice_runs_through_sbatch_and_matches_local(reference, slice_run):
    project, out = slice_run
    by_rule = jobs_by_rule(out)
    subs = submissions(out)
    slurm_ids = [s for _, s, _ in subs]
    # every compute job went through sbatch (one submission each), the table is a local rule
    compute = {r: ids for r, ids in by_rule.items() if r != "make_table"}
    assert sorted(compute) == ["prepare_dataset", "sample_text", "score_samples",
                               "tokenize", "train_model", "train_tokenizer"], by_rule
    assert sorted(j for j, _, _ in subs) == sorted(j for ids in compute.values() for j in ids)
    assert len(set(slurm_ids)) == len(slurm_ids)
    for _, slurm_id, log in subs:
        assert log.exists(), log  # the SLURM log of the job (kept by the test overlay)
        info = scontrol(slurm_id)
        assert info["JobState"] == "COMPLETED" and info["Partition"] == "debug", info
    # the training job: the CPUs and memory of its config, its SLURM id and 2 ranks in its log
    (train_id,) = slurm_ids_of(out, "train_model")
    info = scontrol(train_id)
    assert info["NumCPUs"] == "2" and info["MinMemoryNode"] == "3000M", info
    assert info["Comment"].startswith("rule_train_model"), info
    log = (project.root / train_log(SLICE_EXP)).read_text()
    worlds = re.findall(r"world: world_size=(\d+) global_rank=(\d+) .*slurm_job_id=(\S+)", log)
    assert sorted(worlds) == [("2", "0", train_id), ("2", "1", train_id)], log
    assert "batches_per_epoch=10" in log  # 600 rows / (32 x 2 ranks)
    assert_same_outputs(reference, project, "slurm_slice", SLICE_EXP)


def test_scancelled_training_resumes_and_matches(reference, slice_run, tmp_path):
    project = clone(slice_run[0], tmp_path / "scancel")
    last = project.root / "results/train" / DATASET / FAULT_EXP / "_work" / "last.ckpt"
    proc = subprocess.Popen(slurm_cmd(table_target("slurm_faults")), cwd=project.root,
                            env=slurm_project_env(project), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(last.exists, 300, "the training's first checkpoint", proc)
        running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"],
                                 capture_output=True, text=True, check=True).stdout
        (job,) = [line.split("|")[0] for line in running.splitlines()
                  if "rule_train_model" in line and FAULT_EXP in line]
        subprocess.run(["scancel", job], check=True)
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    (project.root / "snakemake-scancel.out").write_text(out)
    assert proc.returncode == 0, out[-8000:]
    attempts = slurm_ids_of(out, "train_model")
    assert attempts[0] == job and len(attempts) == 2, (job, attempts)
    assert scontrol(job)["JobState"] == "CANCELLED"
    assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in out
    log = (project.root / train_log(FAULT_EXP)).read_text()
    assert "resuming from" in log and "last.ckpt" in log, log
    start = int(re.search(r"steps=300/300 \(from (\d+)\)", log).group(1))
    assert 0 < start < 300, log
    assert_same_outputs(reference, project, "slurm_faults", FAULT_EXP)


def test_time_budget_exit_is_resubmitted_and_resumes_bitwise(reference, slice_run, tmp_path):
    project = clone(slice_run[0], tmp_path / "budget")
    # 1 minute per attempt and a 59 s margin: attempt 1 stops on its first step boundary,
    # attempt 2 gets runtime 2 (budget 61 s) and finishes
    cfg = slice_config()
    cfg["experiments"][FAULT_EXP]["resources"].update(runtime=1, stop_margin_s=59)
    project.write_config(cfg, CONFIG)
    out = run_slurm(project, model_path(FAULT_EXP))
    out = out.stdout + out.stderr
    first, second = slurm_ids_of(out, "train_model")
    assert scontrol(first)["JobState"] == "FAILED" and scontrol(first)["TimeLimit"] == "00:01:00"
    assert scontrol(second)["JobState"] == "COMPLETED" and scontrol(second)["TimeLimit"] == "00:02:00"
    slurm_log = next(log for _, s, log in submissions(out) if s == first).read_text()
    assert "exit status 75" in slurm_log, slurm_log[-3000:]
    log = (project.root / train_log(FAULT_EXP)).read_text()
    assert "resuming from" in log and "steps=300/300 (from 1)" in log, log
    assert_same_model(reference.root / model_path(FAULT_EXP), project.root / model_path(FAULT_EXP))


def test_failed_scoring_keeps_samples_and_retries_with_more_memory(reference, slice_run, tmp_path):
    project = clone(slice_run[0], tmp_path / "oom")
    for sub in ("samples", "scores", "tables"):
        shutil.rmtree(project.root / "results" / sub)
    samples = [project.root / f"results/samples/{DATASET}/{SLICE_EXP}/ancestral/nfe{NFE}/seed{s}.jsonl"
               for s in SEEDS]
    # round 1: far too little memory for scoring, both attempts (60 MB, 120 MB) are killed
    project.write_config(slice_config(score={"mem_mb": 60}), CONFIG)
    proc = run_slurm(project, table_target("slurm_slice"), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert len(slurm_ids_of(out, "sample_text")) == 2
    failed = slurm_ids_of(out, "score_samples")
    assert len(failed) == 4, out[-6000:]  # 2 jobs x 2 attempts
    logs = {s: log for _, s, log in submissions(out)}
    assert all("exceeded memory limit" in logs[s].read_text() for s in failed)
    assert all(p.exists() for p in samples)  # the finished samples stay
    stamps = [p.stat().st_mtime_ns for p in samples]
    # round 2: 200 MB is still too little, and each retry asks for 200 MB more (mem_mb x attempt).
    # A scoring step (the jobstep's Snakemake plus the scorer, no torch for text metrics) peaks
    # between ~260 and ~430 MB as slurmstepd's RSS polling sees it, so the 400 MB attempt may
    # pass or fail: up to three attempts (--retries 2), the last (600 MB) is enough. Each job
    # fails at least once, only for memory, and ends COMPLETED; nothing is resampled.
    project.write_config(slice_config(score={"mem_mb": 200}), CONFIG)
    proc = run_slurm(project, table_target("slurm_slice"), "--retries", "2")
    out = proc.stdout + proc.stderr
    assert "sample_text" not in jobs_by_rule(out)
    per_seed: dict[str, list[str]] = {}
    for _, slurm_id, log in submissions(out):
        if "rule_score_samples" in str(log):
            per_seed.setdefault(log.parent.name, []).append(slurm_id)
    assert len(per_seed) == 2, out[-6000:]
    for seed, ids in per_seed.items():
        states = [scontrol(i)["JobState"] for i in ids]
        assert states[-1] == "COMPLETED" and set(states[:-1]) == {"FAILED"}, (seed, ids, states)
        assert all("exceeded memory limit" in
                   next(log for _, s, log in submissions(out) if s == i).read_text()
                   for i in ids[:-1])
    assert [p.stat().st_mtime_ns for p in samples] == stamps
    csv = table_target("slurm_slice")
    assert (reference.root / csv).read_text() == (project.root / csv).read_text()
