"""KL-flow (``klflow``) sampler overhead, samples/s and the memory of the V-wide sampler state.

    .venv/bin/python benchmarks/bench_klflow.py [--device cpu|cuda] [--threads 0]
        [--samplers basic,semi_sampling,sampling,hybrid] [--nfe 32] [--time-param paper|code]
        [--batch 1] [--seq-len 128] [--vocab 50257] [--d-model 256] [--n-layers 4] [--n-heads 4]
        [--repeat 2] [--chunk N] [--memory | --no-memory] [--mem-seq-len 1024] [--json out.json]

* Sampler overhead (per sampler) = time(sample(nfe=k)) / (k × time of one network call), median
  over ``--repeat`` rounds after a warm-up round; each round times ``CALLS_PER_REP`` bare calls
  (their median) right before its sample runs, so a load that drifts on a shared machine hits
  numerator and denominator alike. 1.00 = the noise, x̂₁ draws, softmaxes, state updates and the
  final argmax cost nothing beyond the k calls (target <= 1.10 at k >= 32). ``in_run`` = sample
  wall time / wall time of its own network calls (forward hooks, same run: the most load-robust).
  Samples/s = batch / sample wall time. Untrained weights, randomised so the logits vary. The
  model is the paper's backbone (bidirectional, adaLN-Zero, RoPE, ReLU²) at ``--d-model`` etc.;
  all layouts' generated positions are the ``lm`` layout's (every position but [BOS]).
* Memory of the V-wide state at ``--vocab`` (50,257) × ``--mem-seq-len`` (1,024) per sample:
  analytic (x: L·V fp32; l: (L − 1)·V fp32 for basic / semi-sampling / hybrid; the network's
  logits L·V in fp32 on the CPU, bf16 under CUDA autocast; the block temporaries, about three
  ``chunk`` × V fp32 blocks) and measured: on CUDA ``torch.cuda.max_memory_allocated`` over the
  sample call minus what was allocated before it; on the CPU the peak resident-set growth of a
  fresh child process during the sample call (``ru_maxrss``; tracemalloc does not see torch's
  allocator), with a 1-layer d = 64 network so the state dominates. Both with the default blocks
  and unchunked (one block of all positions: every temporary V-wide), batch ``--mem-batch`` (1).
  On CUDA everything runs under bf16 autocast and inference mode, as ``repro.sample`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch
from _common import (
    add_size_args,
    add_threads_arg,
    auto_threads,
    autocast,
    machine_line,
    median_time,
    overhead_rounds,
    overhead_summary,
    sync,
    write_json,
)

from repro.methods.base import Batch
from repro.methods.klflow import BLOCK_ELEMENTS, KLFlow

BOS = 5
SAMPLER_OPTS = {
    "basic": {},
    "semi_sampling": {"top_k": 1},
    "sampling": {"top_k": 1},
    "hybrid": {"t_star": 0.28},
}


def build(
    args: argparse.Namespace,
    d_model: int,
    n_layers: int,
    n_heads: int,
    seq_len: int,
    device: torch.device,
):
    path = {"time_param": "code", "t_max": 0.3} if args.time_param == "code" else {}
    torch.manual_seed(0)
    model = KLFlow().build_model(
        dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads, dropout=0.0, pad_id=0, **path),
        vocab_size=args.vocab,
        seq_len=seq_len,
    )
    with torch.no_grad():  # adaLN-Zero starts every block at the identity: give it real weights
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return model.to(device).eval()


def lm_prompt(batch: int, seq_len: int, device: torch.device) -> Batch:
    """``lm`` rows: only position 0 ([BOS]) given."""
    ids = torch.zeros(batch, seq_len, dtype=torch.long)
    ids[:, 0] = BOS
    cond = torch.zeros(batch, seq_len, dtype=torch.bool)
    cond[:, 0] = True
    return Batch(ids, cond).to(device)


# ------------------------------------------------------------------------------------------------
# overhead and samples/s
# ------------------------------------------------------------------------------------------------


def bench_overhead(args: argparse.Namespace, device: torch.device) -> dict:
    method = KLFlow()
    model = build(args, args.d_model, args.n_layers, args.n_heads, args.seq_len, device)
    prompt = lm_prompt(args.batch, args.seq_len, device)
    x = (
        torch.distributions.Dirichlet(torch.ones(args.vocab))
        .sample((args.batch, args.seq_len))
        .to(device)
    )
    t = torch.full((args.batch,), 0.5, device=device)
    chunk = {} if args.chunk is None else {"chunk": args.chunk}

    def one_call() -> None:
        model(x, t)

    out: dict = {"parameters": sum(p.numel() for p in model.parameters()), "samplers": {}}
    with torch.inference_mode(), autocast(device):
        out["one_call_s"] = median_time(one_call, device, 3)
        for sampler in args.samplers:
            for k in args.nfe:

                def run(k=k, sampler=sampler) -> None:
                    gen = torch.Generator(device).manual_seed(0)
                    method.sample(model, prompt, k, sampler, gen, **SAMPLER_OPTS[sampler], **chunk)

                # a warm-up round, then --repeat timed ones
                reps = overhead_rounds(one_call, {sampler: run}, model, device, args.repeat)
                row = overhead_summary(reps[sampler], k)
                row["samples_per_s"] = args.batch / row["sample_s"]
                out["samplers"].setdefault(sampler, {})[k] = row
                print(
                    f"  {sampler:<13} nfe={k:<4d} {row['sample_s'] * 1e3:9.1f} ms  (call "
                    f"{row['call_s'] * 1e3:.1f} ms)  overhead {row['overhead']:.3f}  in_run "
                    f"{row['in_run']:.3f}  (target <= 1.10)  {row['samples_per_s']:.2f} samples/s",
                    flush=True,
                )
    return out


# ------------------------------------------------------------------------------------------------
# memory of the V-wide state
# ------------------------------------------------------------------------------------------------


def analytic_memory(vocab: int, seq_len: int, device: torch.device, chunk: int | None) -> dict:
    """Bytes per sample of the V-wide tensors of one sampler run (lm layout: L − 1 free)."""
    fp32 = 4
    rows = chunk or max(1, BLOCK_ELEMENTS.get(device.type, 1 << 25) // vocab)
    x = seq_len * vocab * fp32
    l_state = (seq_len - 1) * vocab * fp32
    logits = seq_len * vocab * (2 if device.type == "cuda" else fp32)
    blocks = 3 * min(rows, seq_len - 1) * vocab * fp32  # noise buffer + two block temporaries
    return {
        "x_bytes": x,
        "l_bytes": l_state,
        "logits_bytes": logits,
        "block_bytes": blocks,
        "state_ode_bytes": x + l_state,  # basic / semi-sampling / hybrid before t*
        "state_sampling_bytes": x,  # sampling (and hybrid after t*): no logit state
    }


def measure_child(args: argparse.Namespace) -> None:
    """(In a fresh process) print the peak memory growth of one sample call as JSON."""
    device = torch.device(args.device)
    torch.set_num_threads(auto_threads(args.threads))
    model = build(args, 64, 1, 2, args.mem_seq_len, device)
    prompt = lm_prompt(args.mem_batch, args.mem_seq_len, device)
    chunk = {} if args.chunk is None else {"chunk": args.chunk}
    if args.unchunked:
        chunk = {"chunk": args.mem_batch * args.mem_seq_len}
    sampler = args.child_sampler
    with torch.inference_mode(), autocast(device):
        gen = torch.Generator(device).manual_seed(0)
        if device.type == "cuda":
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        else:
            with open("/proc/self/statm") as f:
                before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")  # current RSS
        KLFlow().sample(model, prompt, 3, sampler, gen, **SAMPLER_OPTS[sampler], **chunk)
        if device.type == "cuda":
            sync(device)
            peak = torch.cuda.max_memory_allocated(device) - before
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(json.dumps({"peak_bytes": peak}))


def bench_memory(args: argparse.Namespace, device: torch.device) -> dict:
    mb = 1 / 2**20
    ana = analytic_memory(args.vocab, args.mem_seq_len, device, args.chunk)
    print(
        f"[memory] V {args.vocab} x L {args.mem_seq_len}, per sample, analytic: x "
        f"{ana['x_bytes'] * mb:.0f} MiB + logit state l {ana['l_bytes'] * mb:.0f} MiB "
        f"(basic/semi/hybrid) = {ana['state_ode_bytes'] * mb:.0f} MiB; sampling "
        f"{ana['state_sampling_bytes'] * mb:.0f} MiB; plus the network's logits "
        f"{ana['logits_bytes'] * mb:.0f} MiB and block temporaries <= {ana['block_bytes'] * mb:.0f} MiB"
    )
    out: dict = {"analytic": ana, "measured": {}}
    for sampler in args.samplers:
        row = {}
        for unchunked in (False, True):
            cmd = [
                sys.executable,
                __file__,
                "--_child",
                sampler,
                "--device",
                args.device,
                "--vocab",
                str(args.vocab),
                "--mem-seq-len",
                str(args.mem_seq_len),
                "--mem-batch",
                str(args.mem_batch),
                "--threads",
                str(args.threads),
                "--time-param",
                args.time_param,
            ]
            if args.chunk is not None:
                cmd += ["--chunk", str(args.chunk)]
            if unchunked:
                cmd.append("--unchunked")
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            peak = json.loads(res.stdout.strip().splitlines()[-1])["peak_bytes"] / args.mem_batch
            row["unchunked" if unchunked else "blocks"] = peak
        out["measured"][sampler] = row
        print(
            f"  {sampler:<13} measured peak growth per sample: {row['blocks'] * mb:7.0f} MiB with "
            f"blocks, {row['unchunked'] * mb:7.0f} MiB unchunked ({row['unchunked'] / row['blocks']:.2f}x)",
            flush=True,
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    add_threads_arg(p)
    p.add_argument("--samplers", default="basic,semi_sampling,sampling,hybrid")
    p.add_argument("--nfe", default="32", help="comma-separated network-call budgets (>= 32)")
    p.add_argument("--time-param", choices=("paper", "code"), default="paper")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=50257)
    add_size_args(p)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--chunk", type=int, default=None, help="positions per block (default: auto)")
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the V-wide state at --vocab x --mem-seq-len",
    )
    p.add_argument("--mem-seq-len", type=int, default=1024)
    p.add_argument("--mem-batch", type=int, default=1)
    p.add_argument("--json", default=None, help="write the numbers here")
    p.add_argument("--_child", dest="child_sampler", default=None, help=argparse.SUPPRESS)
    p.add_argument("--unchunked", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    unknown = sorted(set(args.samplers) - set(KLFlow.samplers))
    if unknown:
        p.error(f"unknown samplers {unknown}; choose from {list(KLFlow.samplers)}")
    if args.child_sampler:
        measure_child(args)
        return
    args.nfe = [int(k) for k in args.nfe.split(",")]
    torch.set_num_threads(auto_threads(args.threads))
    device = torch.device(args.device)
    print(f"{machine_line()}  device {device}  time_param {args.time_param}")
    results: dict = {"args": vars(args)}
    print(
        f"[overhead] batch {args.batch} x {args.seq_len} positions, V {args.vocab}, d_model "
        f"{args.d_model}, {args.n_layers} layers, {args.n_heads} heads"
    )
    results["overhead"] = bench_overhead(args, device)
    print(
        f"  ({results['overhead']['parameters'] / 1e6:.1f}M parameters, one network call "
        f"{results['overhead']['one_call_s'] * 1e3:.1f} ms)"
    )
    if args.memory:
        results["memory"] = bench_memory(args, device)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
