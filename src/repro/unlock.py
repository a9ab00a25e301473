"""``python -m repro.unlock``: remove the lock a killed Snakemake left, when no Snakemake runs here.

A Snakemake that is killed itself (``kill -9``, a closed ssh session outside tmux, the login
node's out-of-memory killer) cannot remove its lock, ``.snakemake/locks/``. Every later run of the
same outputs then stops with ``LockException`` ("Directory cannot be locked"), with
``--rerun-incomplete`` too. ``snakemake --unlock`` removes the lock whether or not another
Snakemake still holds it; this command removes it only when no Snakemake process runs in this
directory on this machine, and names the ones that do otherwise::

    python -m repro.unlock && snakemake --profile slurm paper   # then the same command as before

Exit status: 0 when the lock was removed or there was none, 1 when a Snakemake runs here (the lock
is kept: wait for it, or stop it first). Only this machine's processes (those this user may read)
are seen: if Snakemake may run on another login node in the same directory, look there first.
Removing the lock is what ``snakemake --unlock`` does (it deletes ``.snakemake/locks/``); outputs
of jobs the killed Snakemake left half-done are redone by ``rerun-incomplete`` (both profiles).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path


def _is_snakemake(cmdline: list[str]) -> bool:
    """``snakemake …`` (the entry script, under its interpreter or not) or ``python -m snakemake``."""
    for i, arg in enumerate(cmdline[:3]):
        if os.path.basename(arg) == "snakemake":
            return True
        if arg == "-m" and i + 1 < len(cmdline) and cmdline[i + 1] == "snakemake":
            return True
    return False


def snakemake_processes(directory: str | os.PathLike) -> list[tuple[int, str]]:
    """``(pid, command line)`` of the Snakemake processes whose working directory is
    ``directory`` (on this machine, among the processes this user may inspect)."""
    here = os.path.realpath(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone, or another user's
            continue
        args = [a.decode(errors="replace") for a in cmdline if a]
        if cwd == here and _is_snakemake(args):
            found.append((int(entry.name), " ".join(args)))
    return sorted(found)


def unlock(directory: str | os.PathLike = ".") -> tuple[bool, str]:
    """Remove ``directory/.snakemake/locks`` unless a Snakemake runs there: ``(ok, message)``."""
    locks = Path(directory) / ".snakemake" / "locks"
    if not locks.exists() or not any(locks.iterdir()):
        return True, f"no Snakemake lock in {Path(directory).resolve()}: nothing to do"
    running = snakemake_processes(directory)
    if running:
        who = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in running)
        return False, (
            f"Snakemake is running in {Path(directory).resolve()} ({who}): its lock is kept. "
            "Wait for it to finish, or stop it (kill PID: it cancels or waits for its jobs), then "
            "rerun this command"
        )
    names = sorted(p.name for p in locks.iterdir())
    shutil.rmtree(locks)
    return True, (
        f"removed the stale Snakemake lock {locks} ({', '.join(names)}): no Snakemake runs in this "
        "directory; now rerun your snakemake command"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m repro.unlock", description=__doc__.splitlines()[0])
    p.add_argument("--directory", "-d", default=".", help="the Snakemake working directory")
    args = p.parse_args(argv)
    ok, message = unlock(args.directory)
    print(message, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
