"""Launcher of every stage CLI the rules call: ``python -m repro.job repro.sample --ckpt …``.

It runs ``python -m <stage> <args>`` — in this process, or, on a local machine, in a process forked
from a **warm worker** (:mod:`repro.warm`) that has the heavy third-party packages (torch,
Lightning, transformers, the metric packages) imported already. Without it a smoke-size job spends
most of its wall time importing them (``python -X importtime``: torch ~1 s, Lightning ~1.5 s,
transformers + BERTScore ~1.5 s, torchmetrics ~1 s, NLTK ~0.5 s on an idle 2-core machine) for a few
hundred milliseconds of work; with it a job starts in tens of milliseconds.

What the forked stage gets is what ``python -m`` would have given it: the caller's argv, working
directory, environment (a worker serves only callers whose environment, interpreter and project
are identical to its own, see :func:`worker_key`), umask and standard streams (passed as file
descriptors), and a fresh import of the ``repro`` package (never cached in the worker, so an edited
source file is always the one that runs). Signals sent to this launcher (SIGTERM from Snakemake or
a user, SIGINT, SIGUSR1) are forwarded to the stage, and the launcher exits with the stage's
status (128 + N when the stage dies of signal N), so Snakemake sees exactly what it would see.
If this launcher is killed outright, the stage is terminated too.

The warm worker is used only where it is safe and pays:

* ``REPRO_WARM=0`` (or ``off``) disables it; the stage then runs in this process;
* never inside a SLURM job (``SLURM_JOB_ID`` set): the job's cgroup must hold the stage's CPUs and
  memory, and a worker outside it would escape both; every cluster job runs directly;
* if the worker cannot be reached or started (no Unix sockets, an unwritable runtime directory),
  the stage runs in this process, with a one-line note on stderr.

**GPUs of local jobs**: a rule's command passes the job's ``gpu`` resource as ``REPRO_JOB_GPUS``;
outside SLURM the launcher then takes that many GPUs from the machine's pool
(:mod:`repro.gpu_slots`), sets ``CUDA_VISIBLE_DEVICES`` to them (``""`` for a job without GPUs) before
the stage starts, here or in a warm worker, and frees them when the stage ends.

This module imports only the standard library: it is what every job pays before its work.
"""

from __future__ import annotations

import os
import sys

#: environment variables that differ between otherwise identical jobs and never change what a
#: stage computes: left out of the worker key (everything else must match exactly)
VOLATILE_ENV = ("_", "OLDPWD", "PWD", "SHLVL", "SNAKEMAKE_PROFILE", "REPRO_JOB_GPUS")


def warm_enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether this job may use a warm worker (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("REPRO_WARM", "1").strip().lower() in ("0", "off", "false", "no"):
        return False
    return not env.get("SLURM_JOB_ID")


def run_here(module: str, args: list[str], mode: str = "direct") -> int:
    """``python -m module args`` in this process; its exit status.

    Ends with one line on stderr (the job's log), read by ``benchmarks/bench_workflow.py``::

        repro.job: repro.sample exit 0 in 1.234 s (cpu 1.180 s, warm)

    the stage's own wall and CPU seconds (its imports of project modules, reading, computing and
    writing) and whether it ran in a warm worker or in this process.
    """
    import resource
    import runpy
    import time

    def cpu() -> float:
        own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    start, cpu0 = time.perf_counter(), cpu()
    sys.argv = [module, *args]
    code: int = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    sys.stderr.flush()
    print(
        f"repro.job: {module} exit {code} in {time.perf_counter() - start:.3f} s "
        f"(cpu {cpu() - cpu0:.3f} s, {mode})",
        file=sys.stderr,
        flush=True,
    )
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print("usage: python -m repro.job MODULE [ARGS...]   (e.g. repro.sample --ckpt …)",
              file=sys.stderr)
        return 2
    module, args = argv[0], argv[1:]
    slots = None
    if "REPRO_JOB_GPUS" in os.environ and not os.environ.get("SLURM_JOB_ID"):
        # a local job: the GPUs it may see (repro.gpu_slots), held until it ends
        from repro import gpu_slots

        try:
            slots = gpu_slots.assign(os.environ)
        except gpu_slots.SlotError as exc:
            print(f"repro.job: {exc}", file=sys.stderr, flush=True)
            return 2
    try:
        if warm_enabled():
            from repro import warm

            code = warm.run_warm(module, args)
            if code is not None:
                return code
        return run_here(module, args)
    finally:
        if slots is not None:
            slots.release()


if __name__ == "__main__":
    sys.exit(main())
