"""``python -m repro.unlock``: the stale lock of a killed Snakemake, removed only when safe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from repro import unlock

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SNAKEFILE = """\
rule all:
    output:
        "out.txt",
    shell:
        "if [ -e slow ]; then sleep 60; fi; touch {output}"
"""


def _wait(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_is_snakemake_command_lines():
    assert unlock._is_snakemake(["/v/bin/python", "/v/bin/snakemake", "--profile", "slurm"])
    assert unlock._is_snakemake(["snakemake", "-n"])
    assert unlock._is_snakemake(["python3", "-m", "snakemake", "paper"])
    assert not unlock._is_snakemake(["grep", "-r", "x", "snakemake"])
    assert not unlock._is_snakemake(["vim", "Snakefile"])


def test_unlock_after_snakemake_was_killed(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "slow").touch()
    locks = tmp_path / ".snakemake" / "locks"
    killed = subprocess.Popen([str(SNAKEMAKE), "--cores", "1", "-q"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        _wait(lambda: locks.is_dir() and any(locks.iterdir()), "Snakemake never locked")
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # Snakemake and its job, as kill -9 / a lost ssh
        killed.wait()
    assert any(locks.iterdir())  # the stale lock: every later run stops with LockException

    # a Snakemake still running in the directory: the lock is kept, the message names it
    fake = tmp_path / "bin" / "snakemake"
    fake.parent.mkdir()
    fake.write_text("import time\ntime.sleep(60)\n")
    live = subprocess.Popen([sys.executable, str(fake)], cwd=tmp_path)
    try:
        _wait(lambda: unlock.snakemake_processes(tmp_path), "the live Snakemake is not seen")
        ok, message = unlock.unlock(tmp_path)
        assert not ok and f"pid {live.pid}" in message and "lock is kept" in message
        assert any(locks.iterdir())
        assert unlock.main(["-d", str(tmp_path)]) == 1
    finally:
        live.kill()
        live.wait()

    assert unlock.main(["-d", str(tmp_path)]) == 0
    assert not locks.exists()
    assert unlock.unlock(tmp_path) == (True, f"no Snakemake lock in {tmp_path}: nothing to do")
    (tmp_path / "slow").unlink()
    rerun = subprocess.run([str(SNAKEMAKE), "--cores", "1", "-q"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert (tmp_path / "out.txt").exists()
