"""Timing, device, batch and command-line helpers shared by the torch benchmarks.

Used by ``bench_dfm.py``, ``bench_diffuseq.py``, ``bench_embedding_fm.py``, ``bench_klflow.py``
and ``bench_speed.py``. The benchmarks run as scripts (``.venv/bin/python benchmarks/bench_x.py``,
also the ``bench_klflow.py`` memory child, which re-runs its own file): Python puts the script's
folder first on ``sys.path``, so they import this module as ``_common``. It is not a benchmark
itself (no ``bench_`` prefix) and not a package module: ``python -m benchmarks.bench_x`` is not
supported.

Timing. Every wall time is ``time.perf_counter`` around the work with :func:`sync` on both sides,
so on CUDA it covers the kernels, not only their launch; on the CPU :func:`sync` does nothing.

Sampler overhead, as every sampler benchmark defines it (:func:`overhead_rounds`,
:func:`overhead_summary`): a warm-up round (optional), then ``repeat`` timed rounds. Each timed
round first times ``CALLS_PER_REP`` bare network calls (their median: ``near``), then runs every
variant (solver, rounding, ...) once, in turns, so a load that drifts on a shared machine hits
numerator and denominator, and all variants, alike. Every sample run is timed with forward hooks
on the network (:func:`hooked_run`), which also give the wall time of its own network calls. Per
variant, with ``calls`` network calls per sample, medians over the timed rounds:

* ``overhead`` = sample wall time / (calls × near): 1.00 means the sampler's own work costs
  nothing beyond its network calls;
* ``in_run`` = sample wall time / wall time of its own network calls, both from the same run: the
  most load-robust of the two.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from repro.methods.base import Batch

#: bare network calls timed right before each round of sample runs (their median divides it)
CALLS_PER_REP = 3


# ------------------------------------------------------------------------------------------------
# threads and device
# ------------------------------------------------------------------------------------------------


def auto_threads(requested: int) -> int:
    """``requested``, or for 0 the CPU cores the 1-minute load average leaves idle (at least 1):
    on a shared machine more OpenMP threads than idle cores can make every call many times slower.
    """
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores - round(os.getloadavg()[0])))


def autocast(device: torch.device):
    """bf16 autocast on CUDA, as ``repro.sample`` and the train stage's ``auto`` precision; a
    no-op context elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_line() -> str:
    """``cpus N  load L  torch V  threads T``: how the header line of most benchmarks starts."""
    return (
        f"cpus {os.cpu_count()}  load {os.getloadavg()[0]:.1f}  torch {torch.__version__}  "
        f"threads {torch.get_num_threads()}"
    )


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------


def add_threads_arg(parser: argparse.ArgumentParser, default: int = 0) -> None:
    """The ``--threads`` option every benchmark has (passed through :func:`auto_threads`)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=default,
        help="torch CPU threads (0: the cores the load average leaves idle)",
    )


def add_size_args(parser: argparse.ArgumentParser) -> None:
    """``--d-model`` (256), ``--n-layers`` (4), ``--n-heads`` (4): the network size options."""
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)


def add_sampler_args(
    parser: argparse.ArgumentParser,
    *,
    configs: str,
    nfe: str,
    nfe_help: str,
    batch: int,
    vocab: int,
) -> None:
    """The options a ``small``/``paper`` sampler benchmark starts with: ``--device``,
    ``--threads``, ``--configs``, ``--nfe``, ``--batch``, ``--vocab`` and the network size; the
    script adds its own after them (``--repeat``, ``--paper-*``, ...)."""
    parser.add_argument("--device", default="cpu")
    add_threads_arg(parser)
    parser.add_argument("--configs", default=configs, help="comma-separated: small, paper")
    parser.add_argument("--nfe", default=nfe, help=nfe_help)
    parser.add_argument("--batch", type=int, default=batch, help="sampling batch (small)")
    parser.add_argument("--vocab", type=int, default=vocab)
    add_size_args(parser)


def parse_sampler_args(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, list[str]]:
    """Parse the command line of a ``small``/``paper`` sampler benchmark: (the arguments, with
    ``--nfe`` and ``--paper-nfe`` as lists of ints; the ``--configs`` names, checked)."""
    args = parser.parse_args()
    args.nfe = [int(k) for k in args.nfe.split(",")]
    args.paper_nfe = [int(k) for k in args.paper_nfe.split(",")]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - {"small", "paper"})
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from small, paper")
    return args, configs


def sampler_config(name: str, args: argparse.Namespace, paper: dict, **extra) -> argparse.Namespace:
    """The ``small`` configuration (the ``paper`` keys taken from the command line, ``--batch``,
    ``--nfe``, ``--repeat``) or the ``paper`` one (``paper`` itself, ``--paper-batch``,
    ``--paper-nfe``, ``--paper-repeat``), both with ``--vocab`` and ``extra``."""
    if name == "small":
        model = {key: getattr(args, key) for key in paper}
        runs = dict(batch=args.batch, nfe=args.nfe, repeat=args.repeat)
    else:
        model = dict(paper)
        runs = dict(batch=args.paper_batch, nfe=args.paper_nfe, repeat=args.paper_repeat)
    return argparse.Namespace(**model, vocab=args.vocab, **runs, **extra)


def write_json(path: str | None, results: dict) -> None:
    """Write ``results`` to ``path`` (``--json``), if one was given."""
    if path:
        Path(path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------


def once(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one ``fn()``."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs (no warm-up)."""
    return statistics.median(once(fn, device) for _ in range(repeat))


def timed(fn: Callable[[], object], device: torch.device, repeat: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    return median_time(fn, device, repeat)


def interleaved(
    fns: Mapping[str, Callable[[], object]], device: torch.device, repeat: int
) -> dict[str, float]:
    """Median wall seconds of each function, timed in turns (one warm-up call each first), so a
    changing load on a shared machine hits all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(once(fn, device))
    return {name: statistics.median(v) for name, v in times.items()}


def hooked_run(
    run: Callable[[], object], model: torch.nn.Module, device: torch.device
) -> tuple[float, float, int]:
    """(wall seconds of one ``run()``, wall seconds of the calls of ``model`` inside it, their
    number), the calls timed by a forward pre-hook and a forward hook on ``model``."""
    spent, start, calls = [0.0], [0.0], [0]

    def pre(mod, args):
        sync(device)
        start[0] = time.perf_counter()

    def post(mod, args, out):
        sync(device)
        spent[0] += time.perf_counter() - start[0]
        calls[0] += 1

    handles = [model.register_forward_pre_hook(pre), model.register_forward_hook(post)]
    try:
        total = once(run, device)
    finally:
        for h in handles:
            h.remove()
    return total, spent[0], calls[0]


# ------------------------------------------------------------------------------------------------
# sampler overhead
# ------------------------------------------------------------------------------------------------


class Round(NamedTuple):
    """One variant's sample run in one timed round."""

    total: float  #: wall seconds of the sample run
    net: float  #: wall seconds of its own network calls (forward hooks)
    calls: int  #: its network calls (forward hooks)
    near: float  #: median bare network call timed right before the round


def overhead_rounds(
    one_call: Callable[[], object],
    runs: Mapping[str, Callable[[], object]],
    model: torch.nn.Module,
    device: torch.device,
    repeat: int,
    *,
    warmup: bool = True,
) -> dict[str, list[Round]]:
    """Time every sample run of ``runs`` (name → one sample call) in ``repeat`` rounds, after one
    untimed warm-up round if ``warmup``; see the module docstring. ``one_call`` is one bare call
    of ``model``. Call it under the inference mode and autocast the benchmark measures in."""
    rounds: dict[str, list[Round]] = {name: [] for name in runs}
    for rep in range(repeat + int(warmup)):
        timed_round = rep or not warmup
        # the call time next to the sample runs it divides, not minutes earlier
        near = median_time(one_call, device, CALLS_PER_REP) if timed_round else 0.0
        for name, run in runs.items():  # in turns: all variants see the same load
            total, net, calls = hooked_run(run, model, device)
            if timed_round:
                rounds[name].append(Round(total, net, calls, near))
    return rounds


def overhead_summary(rounds: list[Round], calls: int) -> dict[str, float]:
    """``sample_s``, ``call_s`` (the ``near`` calls), ``overhead`` and ``in_run`` of one variant:
    medians over its rounds; ``calls`` = network calls per sample (the NFE)."""
    return {
        "sample_s": statistics.median(r.total for r in rounds),
        "call_s": statistics.median(r.near for r in rounds),
        "overhead": statistics.median(r.total / (calls * r.near) for r in rounds),
        "in_run": statistics.median(r.total / r.net for r in rounds),
    }


# ------------------------------------------------------------------------------------------------
# batches
# ------------------------------------------------------------------------------------------------


def half_batch(
    n: int,
    seq_len: int,
    given: int,
    high: int,
    device: torch.device | None = None,
    *,
    fill: int | None = None,
    seed: int = 0,
) -> Batch:
    """``n`` rows of ``seq_len`` random ids in [7, ``high``) (past the special ids) from a CPU
    generator seeded ``seed`` (the same rows on every device); cond = the first ``given``
    positions; with ``fill``, the others hold ``fill`` (what the sample stage passes); moved to
    ``device`` if given."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, high, (n, seq_len), generator=g)
    cond = torch.zeros(n, seq_len, dtype=torch.bool)
    cond[:, :given] = True
    if fill is not None:
        ids = ids.masked_fill(~cond, fill)
    batch = Batch(ids, cond)
    return batch if device is None else batch.to(device)
