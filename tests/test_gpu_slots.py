"""GPU slots of local jobs (repro.gpu_slots) and the workstation profile that queues GPU jobs.

The pool is tested with its lock files in a temporary directory; the profile by a real Snakemake
run of a tiny workflow whose "GPU" jobs record the CUDA_VISIBLE_DEVICES they saw and when they ran
(REPRO_GPUS names the machine's GPUs, so no GPU is needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro import gpu_slots

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def test_devices_from_the_environment_and_the_driver(tmp_path):
    assert gpu_slots.machine_gpus({"REPRO_GPUS": "2, 3"}) == ["2", "3"]
    assert gpu_slots.machine_gpus({"REPRO_GPUS": "none", "CUDA_VISIBLE_DEVICES": "0"}) == []
    assert gpu_slots.machine_gpus({"CUDA_VISIBLE_DEVICES": "1,0"}) == ["1", "0"]
    assert gpu_slots.machine_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    proc = tmp_path / "gpus"
    proc.mkdir()
    for pci in ("0000:17:00.0", "0000:65:00.0"):
        (proc / pci).mkdir()
    assert gpu_slots.machine_gpus({}, str(proc)) == ["0", "1"]
    assert gpu_slots.machine_gpus({}, str(tmp_path / "missing")) == []
    with pytest.raises(gpu_slots.SlotError, match="REPRO_GPUS.*twice"):
        gpu_slots.machine_gpus({"REPRO_GPUS": "0,0"})
    with pytest.raises(gpu_slots.SlotError, match="REPRO_GPUS.*not a GPU id"):
        gpu_slots.machine_gpus({"REPRO_GPUS": "0;1"})


def test_slots_are_exclusive_and_freed(tmp_path):
    devices = ["0", "1"]
    a = gpu_slots.try_acquire(1, devices, tmp_path)
    b = gpu_slots.try_acquire(1, devices, tmp_path)
    assert a is not None and b is not None and {a.ids[0], b.ids[0]} == {"0", "1"}
    assert gpu_slots.try_acquire(1, devices, tmp_path) is None  # both taken
    a.release()
    c = gpu_slots.try_acquire(1, devices, tmp_path)
    assert c is not None and c.ids == a.ids
    # a request that cannot be met in full holds nothing
    b.release()
    assert gpu_slots.try_acquire(2, devices, tmp_path) is None  # c still holds one
    c.release()
    both = gpu_slots.try_acquire(2, devices, tmp_path)
    assert both is not None and both.ids == ["0", "1"]
    both.release()


def test_locks_of_a_killed_process_are_freed(tmp_path):
    code = ("import sys, os; from pathlib import Path; from repro import gpu_slots; "
            "s = gpu_slots.try_acquire(1, ['0'], Path(sys.argv[1])); print(s.ids, flush=True); "
            "os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30)
    assert proc.stdout.strip() == "['0']" and proc.returncode == -9
    held = gpu_slots.try_acquire(1, ["0"], tmp_path)
    assert held is not None
    held.release()


def test_acquire_waits_then_times_out_and_refuses_too_many(tmp_path):
    held = gpu_slots.try_acquire(1, ["0"], tmp_path)
    with pytest.raises(gpu_slots.SlotError, match="within"):
        gpu_slots.acquire(1, ["0"], tmp_path, poll_s=0.01, timeout_s=0.05)
    held.release()
    with pytest.raises(gpu_slots.SlotError, match="asks for 2 GPU.*shares 1"):
        gpu_slots.acquire(2, ["0"], tmp_path)


def test_assign_sets_cuda_visible_devices(tmp_path):
    base = {"REPRO_GPUS": "0,1", "REPRO_GPU_LOCK_DIR": str(tmp_path)}
    cpu = {**base, "REPRO_JOB_GPUS": "0"}
    assert gpu_slots.assign(cpu) is None and cpu["CUDA_VISIBLE_DEVICES"] == ""
    one = {**base, "REPRO_JOB_GPUS": "1"}
    held = gpu_slots.assign(one, log=None)
    assert one["CUDA_VISIBLE_DEVICES"] == "0"
    two = {**base, "REPRO_JOB_GPUS": "1"}
    other = gpu_slots.assign(two, log=None)
    assert two["CUDA_VISIBLE_DEVICES"] == "1"
    held.release()
    other.release()
    # inside SLURM, by hand (no request) and without GPUs: the environment is left alone
    for env in ({**base, "REPRO_JOB_GPUS": "1", "SLURM_JOB_ID": "7"}, dict(base),
                {"REPRO_GPUS": "none", "REPRO_JOB_GPUS": "1"}):
        before = dict(env)
        assert gpu_slots.assign(env) is None and env == before
    with pytest.raises(gpu_slots.SlotError, match="REPRO_JOB_GPUS='x'"):
        gpu_slots.assign({**base, "REPRO_JOB_GPUS": "x"})


SNAKEFILE = '''
rule all:
    input: expand("out/gpu{i}.json", i=range(3)), "out/cpu0.json"

rule gpu_job:
    output: "out/gpu{i}.json"
    resources: gpu=1
    shell: "REPRO_JOB_GPUS={resources.gpu} python -m repro.job probe {output}"

rule cpu_job:
    output: "out/cpu{i}.json"
    resources: gpu=0
    shell: "REPRO_JOB_GPUS={resources.gpu} python -m repro.job probe {output}"
'''

PROBE = '''
import json, os, sys, time
start = time.time()
time.sleep(0.4)
json.dump({"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()},
          open(sys.argv[1], "w"))
'''


def _overlaps(records):
    return [(a, b) for i, a in enumerate(records) for b in records[i + 1:]
            if a["start"] < b["end"] and b["start"] < a["end"]]


def test_workstation_profile_queues_gpu_jobs(tmp_path):
    """`--profile workstation --resources gpu=1` on a machine with two GPUs: one GPU job at a time,
    on a GPU of its own; a CPU job runs beside them and sees no GPU."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "probe.py").write_text(PROBE)
    profile = REPO / "workflow" / "profiles" / "workstation"
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}
    env.update(PYTHONPATH=f"{tmp_path / 'pkg'}{os.pathsep}{SRC}", REPRO_WARM="0",
               REPRO_GPUS="0,1", REPRO_GPU_LOCK_DIR=str(tmp_path / "locks"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(profile), "--cores", "3",
         "--resources", "gpu=1", "--quiet", "all"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    gpu = [json.loads((tmp_path / "out" / f"gpu{i}.json").read_text()) for i in range(3)]
    cpu = json.loads((tmp_path / "out" / "cpu0.json").read_text())
    assert all(r["cvd"] in ("0", "1") for r in gpu)
    assert cpu["cvd"] == ""
    assert not _overlaps(gpu), "two GPU jobs ran at once under --resources gpu=1"
    # the CPU job is not held back by the GPU queue
    assert any(_overlaps([cpu, g]) for g in gpu)


def test_workstation_profile_is_what_the_root_link_names():
    assert (REPO / "workstation").resolve() == (REPO / "workflow/profiles/workstation").resolve()
    profile = yaml.safe_load((REPO / "workstation" / "config.yaml").read_text())
    assert profile["resources"] == ["gpu=1"] and "executor" not in profile
