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
import statistics
from functools import partial

import torch
from _common import (
    add_sampler_args,
    auto_threads,
    autocast,
    half_batch,
    interleaved,
    machine_line,
    overhead_rounds,
    overhead_summary,
    parse_sampler_args,
    sampler_config,
    timed,
    write_json,
)

from repro.methods import embedding_fm
from repro.methods.base import Batch
from repro.methods.embedding_fm import EmbeddingFM, nearest_tokens

HALF = 64
PAPER = dict(d_model=512, n_layers=16, n_heads=8, emb_dim=128)


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
    batch = half_batch(cfg.batch, 2 * HALF, HALF, cfg.vocab, device)
    hidden = Batch(batch.ids.masked_fill(~batch.cond, 0), batch.cond)
    x = torch.randn(cfg.batch, 2 * HALF, cfg.emb_dim, device=device)
    t = torch.full((cfg.batch,), 0.5, device=device)
    free = x[:, HALF:].reshape(-1, cfg.emb_dim)  # the positions the sampler rounds

    def one_call() -> None:
        model(x, t)

    def run(k: int, rounding: str) -> None:
        embedding_fm.nearest_tokens = ROUNDINGS[rounding]  # what sample() calls
        gen = torch.Generator(device).manual_seed(0)
        method.sample(model, hidden, k, "euler", gen)

    with torch.inference_mode(), autocast(device):
        call = timed(one_call, device, cfg.repeat * 4)
        rounds = interleaved(
            {"call": one_call}
            | {name: lambda f=f: f(free, model.embedding) for name, f in ROUNDINGS.items()},
            device,
            cfg.repeat * 3,
        )
        out = {
            "one_call_s": call,
            "rounding_s": {n: rounds[n] for n in ROUNDINGS},
            "rounding_calls": {n: rounds[n] / rounds["call"] for n in ROUNDINGS},
            "nfe": {},
        }
        for k in cfg.nfe:  # the roundings in turns, after a warm-up round
            try:
                timings = overhead_rounds(
                    one_call,
                    {r: partial(run, k, r) for r in cfg.roundings},
                    model,
                    device,
                    cfg.repeat,
                )
            finally:
                embedding_fm.nearest_tokens = ROUNDINGS["blocked"]
            out["nfe"][k] = {}
            for r, reps in timings.items():
                out["nfe"][k][r] = {
                    **overhead_summary(reps, k),
                    "overhead_without_rounding": statistics.median(
                        (rr.total - rounds[r]) / (k * rr.near) for rr in reps
                    ),
                }
    out["parameters"] = sum(p.numel() for p in model.parameters())
    return out


def bench_training(args: argparse.Namespace, device: torch.device) -> dict:
    method = EmbeddingFM()
    torch.manual_seed(0)
    model = method.build_model(model_cfg(args), vocab_size=args.vocab, seq_len=2 * HALF)
    model.to(device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = half_batch(args.train_batch, 2 * HALF, HALF, args.vocab, device)

    def step() -> None:
        with autocast(device):
            loss = method.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = timed(step, device, args.train_steps, warmup=2)
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
    add_sampler_args(
        p,
        configs="small,paper",
        nfe="16,64",
        nfe_help="comma-separated Euler step counts (small)",
        batch=16,
        vocab=30522,
    )
    p.add_argument("--emb-dim", type=int, default=128)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--paper-batch", type=int, default=2, help="sampling batch (paper)")
    p.add_argument("--paper-nfe", default="16", help="comma-separated Euler step counts (paper)")
    p.add_argument("--paper-repeat", type=int, default=2)
    p.add_argument(
        "--rounding",
        choices=("blocked", "naive", "both"),
        default="both",
        help="search the sampler rounds with: the library's blocked one, the naive "
        "unblocked one it replaced ('before'), or both, timed in turns",
    )
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--json", default=None, help="write the numbers here")
    args, configs = parse_sampler_args(p)
    torch.set_num_threads(auto_threads(args.threads))
    device = torch.device(args.device)
    roundings = list(ROUNDINGS) if args.rounding == "both" else [args.rounding]
    print(f"{machine_line()}  sampler rounding: {', '.join(roundings)}")

    results: dict = {"args": vars(args), "sampler": {}}
    for name in configs:
        cfg = sampler_config(name, args, PAPER, roundings=roundings)
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
    write_json(args.json, results)


if __name__ == "__main__":
    main()
