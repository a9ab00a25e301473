"""The stage launcher (repro.job) and its warm worker (repro.warm), on a probe module.

Each test runs ``python -m repro.job probe …`` in a private working directory (so its worker is
its own) with a worker that preloads only ``json`` (``REPRO_WARM_PRELOAD``), and checks that a job
run by the worker behaves as ``python -m`` would: status, streams, cwd, environment, umask, fresh
project modules, signals, and the death of the launcher.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro import gpu_slots, warm

SRC = Path(__file__).resolve().parents[1] / "src"

PROBE = '''
import os, signal, sys, time
mods = sorted(m for m in sys.modules if m == "repro" or m.startswith("repro."))
print("cwd", os.getcwd())
print("var", os.environ.get("PROBE_VAR"))
print("cvd", os.environ.get("CUDA_VISIBLE_DEVICES"))
print("mods", ",".join(mods))
print("to stderr", file=sys.stderr)
mode = sys.argv[1]
if mode == "exit":
    sys.exit(int(sys.argv[2]))
if mode == "write":
    with open("out.txt", "w") as fh:
        fh.write("x")
if mode == "wait":
    def on_term(signum, frame):
        open("got_signal", "w").write(str(signum))
        sys.exit(75)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR1, on_term)
    open("ready", "w").close()
    time.sleep(60)
if mode == "selfkill":
    os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "probe.py").write_text(PROBE)
    run = tmp_path / "run"
    run.mkdir()
    yield run
    warm.stop_workers(under=run)


def _env(run: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "REPRO_WARM")}
    env.update(PYTHONPATH=f"{run.parent / 'pkg'}{os.pathsep}{SRC}", REPRO_WARM_PRELOAD="json",
               REPRO_WARM_IDLE_S="30", PROBE_VAR="v1")
    env.update(extra)
    return env


def _launch(run: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro.job", "probe", *args], cwd=run,
                          env=env or _env(run), capture_output=True, text=True, timeout=60, **kw)


def _key(run: Path, env: dict) -> str:
    return warm.worker_key({k: v for k, v in env.items()}, str(run))


def _wait_worker(run: Path, env: dict) -> None:
    sock = warm.runtime_dir() / f"{_key(run, env)}.sock"
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert time.monotonic() < deadline, "the warm worker did not come up"
        time.sleep(0.1)


def _warm_run(run: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = env or _env(run)
    first = _launch(run, "exit", "0", env=env)
    assert first.returncode == 0 and "direct)" in first.stderr  # the starter runs it itself
    _wait_worker(run, env)
    return _launch(run, *args, env=env)


def test_stop_workers_stops_only_the_workers_under_a_directory(workdir, tmp_path_factory):
    """The test session stops its own projects' workers, never those of a `make demo` beside."""
    env = _env(workdir)
    assert _warm_run(workdir, "exit", "0", env=env).returncode == 0
    sock = warm.runtime_dir() / f"{_key(workdir, env)}.sock"
    assert warm.stop_workers(under=tmp_path_factory.mktemp("elsewhere")) == 0
    assert sock.exists()
    assert warm.stop_workers(under=workdir.parent) == 1
    deadline = time.monotonic() + 10
    while sock.exists():
        assert time.monotonic() < deadline, "the worker did not stop"
        time.sleep(0.05)


def test_warm_job_is_what_python_m_would_run(workdir):
    mask = os.umask(0o022)
    try:
        proc = _warm_run(workdir, "write")
    finally:
        os.umask(mask)
    assert proc.returncode == 0, proc.stderr
    assert "warm)" in proc.stderr and "to stderr" in proc.stderr
    assert f"cwd {workdir}" in proc.stdout and "var v1" in proc.stdout
    # no project module cached from the worker: only what the stage process imported itself
    assert "mods repro,repro.job\n" in proc.stdout
    assert (workdir / "out.txt").read_text() == "x"
    assert (workdir / "out.txt").stat().st_mode & 0o777 == 0o644


def test_exit_status_and_death_by_signal_pass_through(workdir):
    assert _warm_run(workdir, "exit", "3").returncode == 3
    proc = _launch(workdir, "selfkill")
    assert "warm" not in proc.stderr.split("repro.job:")[-1]  # no timing line: it was killed
    assert proc.returncode == 128 + signal.SIGKILL


def test_another_environment_gets_another_worker(workdir):
    _warm_run(workdir, "exit", "0")
    other = _env(workdir, PROBE_VAR="v2")
    assert _key(workdir, other) != _key(workdir, _env(workdir))
    proc = _launch(workdir, "exit", "0", env=other)
    assert "direct)" in proc.stderr  # not served by the v1 worker


def test_disabled_and_inside_slurm_it_runs_directly(workdir):
    _warm_run(workdir, "exit", "0")
    for extra in ({"REPRO_WARM": "0"}, {"SLURM_JOB_ID": "42"}):
        env = _env(workdir, **extra)
        assert not __import__("repro.job").job.warm_enabled(env)
        proc = _launch(workdir, "exit", "0", env=env)
        assert proc.returncode == 0 and "direct)" in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_sigterm_to_the_launcher_reaches_the_stage(workdir, signum):
    """What a training relies on (repro.train.signals.StopSignals): the stop signal reaches it, its
    exit status 75 comes back."""
    _warm_run(workdir, "exit", "0")
    proc = subprocess.Popen([sys.executable, "-m", "repro.job", "probe", "wait"], cwd=workdir,
                            env=_env(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(workdir / "ready")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err
    assert (workdir / "got_signal").read_text() == str(int(signum))
    assert "warm)" in err


def test_a_killed_launcher_takes_the_stage_with_it(workdir):
    _warm_run(workdir, "exit", "0")
    proc = subprocess.Popen([sys.executable, "-m", "repro.job", "probe", "wait"], cwd=workdir,
                            env=_env(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(workdir / "ready")
    proc.kill()
    proc.wait()
    _wait_for(workdir / "got_signal")  # the handler saw the connection drop and sent SIGTERM


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def test_gpu_jobs_see_only_their_gpu_in_a_warm_worker_too(workdir, tmp_path):
    """REPRO_JOB_GPUS (a rule's gpu resource) outside SLURM: the launcher takes a free GPU of
    REPRO_GPUS and the stage, run by a warm worker or directly, sees only it."""
    locks = tmp_path / "locks"
    env = _env(workdir, REPRO_GPUS="0,1", REPRO_GPU_LOCK_DIR=str(locks), REPRO_JOB_GPUS="1")
    first = _launch(workdir, "exit", "0", env=env)
    assert first.returncode == 0 and "repro.job: CUDA_VISIBLE_DEVICES=0" in first.stderr
    _wait_worker(workdir, {**env, "CUDA_VISIBLE_DEVICES": "0"})  # the key holds the GPU given
    proc = _launch(workdir, "write", env=env)
    assert "warm)" in proc.stderr and "cvd 0\n" in proc.stdout
    held = gpu_slots.try_acquire(1, ["0"], locks)  # GPU 0 busy: the next job gets GPU 1
    try:
        proc = _launch(workdir, "write", env=env)
        assert proc.returncode == 0 and "cvd 1\n" in proc.stdout
    finally:
        held.release()
    cpu = _launch(workdir, "write", env={**env, "REPRO_JOB_GPUS": "0"})
    assert "cvd \n" in cpu.stdout  # no GPU for a CPU job
    too_many = _launch(workdir, "write", env={**env, "REPRO_JOB_GPUS": "3"})
    assert too_many.returncode == 2 and "asks for 3 GPU(s)" in too_many.stderr
    inside = _launch(workdir, "write", env={**env, "SLURM_JOB_ID": "9"})
    assert "cvd None\n" in inside.stdout  # SLURM binds GPUs itself

