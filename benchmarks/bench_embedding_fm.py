"""FM-seq2seq (``embedding_fm``) sampler overhead and training throughput (CPU by default).

    .venv/bin/python benchmarks/bench_embedding_fm.py [--device cpu|cuda] [--threads 0]
        [--configs small,paper] [--nfe 16,64] [--batch 16] [--vocab 30522]
        [--paper-batch 2] [--paper-nfe 16] [--rounding both|blocked|naive] [--json out.json]

Two model configurations, both on 128 positions (64 source + 64 target, the ``halves`` layout)
with a frozen random V×128 embedding, V = 30,522 (bert-base-uncased, so the nearest-neighbour
rounding has its real cost):

* ``small``: the paper's 4M ablation DiT (methods.md §2.3: hidden 256, 4 layers, 4 heads, mlp 4,
  time 256), sampling batch ``--batch`` (16), NFE ``--nfe`` (16, 64); ``--d-model``,
  ``--n-layers``, ``--n-heads``, ``--emb-dim`` and ``--vocab`` change it.
* ``paper``: the paper's model (hidden 512, 16 layers, 8 heads, emb 128), at a small batch
  (``--paper-batch``, 2) and NFE ``--paper-nfe`` (16: the smallest k the target is about, where
  the fixed rounding cost weighs most).

Untrained weights, with the zero-initialised output layer randomised so the integration does real
arithmetic.

* Sampler overhead = time(sample(nfe=k)) / (k × time of one network call), per round of
  ``--repeat`` rounds (after a warm-up round), median over rounds; each round times
  ``CALLS_PER_REP`` (3) bare calls (their median) right before its sample runs, so a load that
  drifts on a shared machine hits numerator and denominator alike. 1.00 means the Euler loop,
  noise, source re-writing and rounding cost nothing beyond the k network calls (target ≤ 1.10).
  ``in_run`` = sample wall time / the wall time of its own network calls, timed by forward hooks
  inside the same sample call (the most load-robust of the two).
* Rounding: the library's :func:`~repro.methods.embedding_fm.nearest_tokens` (``blocked``) and
  ``naive`` — the same search as one unblocked ``(‖E‖² − 2·x Eᵀ).argmin`` over all positions, the
  implementation before the blocked, fused one (identical results) — are timed in turns with a
  network call and printed in network calls. With ``--rounding both`` (default) the sampler is
  timed with each in turns (the overhead before and after); ``blocked`` / ``naive`` time one.
  ``--threads 0`` (default) uses the cores the load average leaves idle: more OpenMP threads
  than idle cores can make every call many times slower on a shared machine.
  On CUDA everything runs under bf16 autocast, as the sample stage does.
* Training throughput (``small`` only): tokens/s of loss + backward + Adam step (batch
  ``--train-batch``, 128 positions), median over ``--train-steps`` steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path

import torch

from repro.methods import embedding_fm
from repro.methods.base import Batch
from repro.methods.embedding_fm import EmbeddingFM, nearest_tokens

HALF = 64
#: network calls timed right before each round of sample runs (their median divides the round)
CALLS_PER_REP = 3
PAPER = dict(d_model=512, n_layers=16, n_heads=8, emb_dim=128)


def auto_threads(requested: int) -> int:
    """``requested``, or for 0 the CPU cores the 1-minute load average leaves idle (at least 1):
    on a shared machine more OpenMP threads than idle cores can make every call many times slower.
    """
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores - round(os.getloadavg()[0])))


def model_cfg(cfg: argparse.Namespace) -> dict:
    return dict(
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        mlp_ratio=4.0,
        time_dim=256,
        time_max_period=100.0,
        emb_dim=cfg.emb_dim,
        embeddings="random",
        pad_id=0,
    )


def batch_of(n: int, vocab: int, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(7, vocab, (n, 2 * HALF), generator=g)
    cond = torch.zeros(n, 2 * HALF, dtype=torch.bool)
    cond[:, :HALF] = True
    return Batch(ids, cond).to(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, as ``repro.sample`` and the train stage's ``auto`` precision."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def once(fn, device: torch.device) -> float:
    """Wall seconds of one ``fn()``."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def timed(fn, device: torch.device, repeat: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hooked_run(run, model: torch.nn.Module, device: torch.device) -> tuple[float, float]:
    """(wall time of one ``run()``, wall time of the network calls made inside it)."""
    spent = [0.0]
    start = [0.0]

    def pre(mod, args):
        sync(device)
        start[0] = time.perf_counter()

    def post(mod, args, out):
        sync(device)
        spent[0] += time.perf_counter() - start[0]

    handles = [model.register_forward_pre_hook(pre), model.register_forward_hook(post)]
    try:
        sync(device)
        t0 = time.perf_counter()
        run()
        sync(device)
        total = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
    return total, spent[0]


def interleaved(fns: dict, device: torch.device, repeat: int) -> dict[str, float]:
    """Median wall seconds of each function, timed in turns (one warm-up call each first), so a
    changing load on a shared machine hits all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def naive_nearest_tokens(x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """The rounding before it was blocked and fused: one (N, V) matrix ‖E‖² − 2·x Eᵀ, argmin."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        emb = embedding.float()
        return (emb.square().sum(-1) - 2.0 * (x.float() @ emb.T)).argmin(-1)


#: rounding implementations: the library's, and the unblocked one it replaced
ROUNDINGS = {"blocked": nearest_tokens, "naive": naive_nearest_tokens}


def bench_sampler(cfg: argparse.Namespace, device: torch.device) -> dict:
    method = EmbeddingFM()
    torch.manual_seed(0)
    model = method.build_model(model_cfg(cfg), vocab_size=cfg.vocab, seq_len=2 * HALF)
    with torch.no_grad():
        head = model.net.final.head
        head.weight.normal_(0.0, 0.02)
    model.to(device).eval()
    batch = batch_of(cfg.batch, cfg.vocab, device)
    hidden = Batch(batch.ids.masked_fill(~batch.cond, 0), batch.cond)
    x = torch.randn(cfg.batch, 2 * HALF, cfg.emb_dim, device=device)
    t = torch.full((cfg.batch,), 0.5, device=device)
    free = x[:, HALF:].reshape(-1, cfg.emb_dim)  # the positions the sampler rounds

    def one_call() -> None:
        model(x, t)

    with torch.inference_mode(), autocast(device):
        call = timed(one_call, device, cfg.repeat * 4)
        rounds = interleaved(
            {"call": one_call}
            | {name: lambda f=f: f(free, model.embedding) for name, f in ROUNDINGS.items()},
            device,
            cfg.repeat * 3,
        )
        out = {"one_call_s": call, "rounding_s": {n: rounds[n] for n in ROUNDINGS},
               "rounding_calls": {n: rounds[n] / rounds["call"] for n in ROUNDINGS}, "nfe": {}}
        for k in cfg.nfe:

            def run(k=k) -> None:
                gen = torch.Generator(device).manual_seed(0)
                method.sample(model, hidden, k, "euler", gen)

            timings: dict[str, list[tuple[float, float, float]]] = {r: [] for r in cfg.roundings}
            try:
                for rep in range(cfg.repeat + 1):  # the first round is the warm-up
                    # the call time next to the sample runs it divides, not minutes earlier
                    near = statistics.median(
                        once(one_call, device) for _ in range(CALLS_PER_REP)
                    ) if rep else 0.0
                    for r in cfg.roundings:  # in turns, so both see the same load
                        embedding_fm.nearest_tokens = ROUNDINGS[r]  # what sample() calls
                        total, net = hooked_run(run, model, device)
                        if rep:
                            timings[r].append((total, net, near))
            finally:
                embedding_fm.nearest_tokens = ROUNDINGS["blocked"]
            out["nfe"][k] = {}
            for r, reps in timings.items():
                out["nfe"][k][r] = {
                    "sample_s": statistics.median(total for total, _, _ in reps),
                    "call_s": statistics.median(near for _, _, near in reps),
                    "overhead": statistics.median(total / (k * near) for total, _, near in reps),
                    "overhead_without_rounding": statistics.median(
                        (total - rounds[r]) / (k * near) for total, _, near in reps
                    ),
                    "in_run": statistics.median(total / net for total, net, _ in reps),
                }
    out["parameters"] = sum(p.numel() for p in model.parameters())
    return out


def bench_training(args: argparse.Namespace, device: torch.device) -> dict:
    method = EmbeddingFM()
    torch.manual_seed(0)
    model = method.build_model(model_cfg(args), vocab_size=args.vocab, seq_len=2 * HALF)
    model.to(device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = batch_of(args.train_batch, args.vocab, device)

    def step() -> None:
        with autocast(device):
            loss = method.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    seconds = timed(step, device, args.train_steps)
    tokens = args.train_batch * 2 * HALF
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"step_s": seconds, "tokens_per_s": tokens / seconds, "parameters": n_params}


def print_sampler(name: str, cfg: argparse.Namespace, device: torch.device, res: dict) -> None:
    positions = cfg.batch * HALF
    print(
        f"[{name}] device {device} threads {torch.get_num_threads()}: batch {cfg.batch} x 128 "
        f"positions, d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, "
        f"V {cfg.vocab} x {cfg.emb_dim} ({res['parameters'] / 1e6:.1f}M parameters)"
    )
    print(f"  one network call    {res['one_call_s'] * 1e3:9.2f} ms")
    for r in ROUNDINGS:
        print(
            f"  rounding {positions:>5} positions, {r:<7}: {res['rounding_s'][r] * 1e3:9.2f} ms "
            f"= {res['rounding_calls'][r]:.2f} network calls (timed in turns with a call)"
        )
    for k, by_rounding in res["nfe"].items():
        for r, row in by_rounding.items():
            print(
                f"  sample nfe={k:<4d} {r:<7} {row['sample_s'] * 1e3:9.2f} ms (call "
                f"{row['call_s'] * 1e3:.1f} ms)  overhead "
                f"{row['overhead']:.3f}  in_run {row['in_run']:.3f} (target <= 1.10; overhead "
                f"without rounding {row['overhead_without_rounding']:.3f})",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: the cores the load average leaves idle)")
    p.add_argument("--configs", default="small,paper", help="comma-separated: small, paper")
    p.add_argument("--nfe", default="16,64", help="comma-separated Euler step counts (small)")
    p.add_argument("--batch", type=int, default=16, help="sampling batch (small)")
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--emb-dim", type=int, default=128)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--paper-batch", type=int, default=2, help="sampling batch (paper)")
    p.add_argument("--paper-nfe", default="16", help="comma-separated Euler step counts (paper)")
    p.add_argument("--paper-repeat", type=int, default=2)
    p.add_argument("--rounding", choices=("blocked", "naive", "both"), default="both",
                   help="search the sampler rounds with: the library's blocked one, the naive "
                        "unblocked one it replaced ('before'), or both, timed in turns")
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--json", default=None, help="write the numbers here")
    args = p.parse_args()
    args.nfe = [int(k) for k in args.nfe.split(",")]
    args.paper_nfe = [int(k) for k in args.paper_nfe.split(",")]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - {"small", "paper"})
    if unknown:
        p.error(f"unknown configs {unknown}; choose from small, paper")
    torch.set_num_threads(auto_threads(args.threads))
    device = torch.device(args.device)
    roundings = list(ROUNDINGS) if args.rounding == "both" else [args.rounding]
    print(f"cpus {os.cpu_count()}  load {os.getloadavg()[0]:.1f}  torch {torch.__version__}  "
          f"threads {torch.get_num_threads()}  sampler rounding: {', '.join(roundings)}")

    results: dict = {"args": vars(args), "sampler": {}}
    for name in configs:
        if name == "small":
            cfg = argparse.Namespace(
                d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                emb_dim=args.emb_dim, vocab=args.vocab, batch=args.batch, nfe=args.nfe,
                repeat=args.repeat, roundings=roundings,
            )
        else:
            cfg = argparse.Namespace(
                **PAPER, vocab=args.vocab, batch=args.paper_batch, nfe=args.paper_nfe,
                repeat=args.paper_repeat, roundings=roundings,
            )
        res = bench_sampler(cfg, device)
        print_sampler(name, cfg, device, res)
        results["sampler"][name] = {"config": vars(cfg), **res}
    if "small" in configs:
        train = bench_training(args, device)
        print(
            f"  training: batch {args.train_batch} x 128, {train['parameters'] / 1e6:.2f}M "
            f"trainable parameters: {train['step_s'] * 1e3:.1f} ms/step, "
            f"{train['tokens_per_s']:.0f} tokens/s"
        )
        results["training"] = train
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
