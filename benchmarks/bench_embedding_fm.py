"""FM-seq2seq (``embedding_fm``) sampler overhead and training throughput (CPU by default).

    .venv/bin/python benchmarks/bench_embedding_fm.py [--device cpu|cuda] [--threads 2]
        [--nfe 16,64] [--batch 16] [--vocab 30522] [--json out.json]

Model: the paper's 4M ablation DiT (methods.md §2.3: hidden 256, 4 layers, 4 heads, mlp 4, time
256) on 128 positions (64 source + 64 target, the ``halves`` layout) with a frozen random
V×128 embedding, V = 30,522 (bert-base-uncased, so the nearest-neighbour rounding has its real
cost). Untrained weights, with the zero-initialised output layer randomised so the integration
does real arithmetic.

* Sampler overhead = time(sample(nfe=k)) / (k × time of one network call), both medians of
  ``--repeat`` runs after a warm-up, for each k in ``--nfe``; 1.00 means the Euler loop, noise,
  source re-writing and rounding cost nothing beyond the k network calls (target ≤ 1.10). The
  rounding's own time is printed as well.
  On CUDA both run under bf16 autocast, as the sample stage does.
* Training throughput: tokens/s of loss + backward + Adam step (batch ``--train-batch``, 128
  positions), median over ``--train-steps`` steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch

from repro.methods.base import Batch
from repro.methods.embedding_fm import EmbeddingFM, nearest_tokens

HALF = 64


def model_cfg(args: argparse.Namespace) -> dict:
    return dict(
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        mlp_ratio=4.0,
        time_dim=256,
        time_max_period=100.0,
        emb_dim=args.emb_dim,
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


def timed(fn, device: torch.device, repeat: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_sampler(args: argparse.Namespace, device: torch.device) -> dict:
    method = EmbeddingFM()
    torch.manual_seed(0)
    model = method.build_model(model_cfg(args), vocab_size=args.vocab, seq_len=2 * HALF)
    with torch.no_grad():
        head = model.net.final.head
        head.weight.normal_(0.0, 0.02)
    model.to(device).eval()
    batch = batch_of(args.batch, args.vocab, device)
    hidden = Batch(batch.ids.masked_fill(~batch.cond, 0), batch.cond)
    x = torch.randn(args.batch, 2 * HALF, args.emb_dim, device=device)
    t = torch.full((args.batch,), 0.5, device=device)

    def one_call() -> None:
        model(x, t)

    with torch.inference_mode(), autocast(device):
        call = timed(one_call, device, args.repeat * 4)
        rounding = timed(
            lambda: nearest_tokens(x[:, HALF:].reshape(-1, args.emb_dim), model.embedding),
            device,
            args.repeat,
        )
        out = {"one_call_s": call, "rounding_s": rounding, "nfe": {}}
        for k in args.nfe:
            gen = torch.Generator(device).manual_seed(0)
            total = timed(
                lambda k=k, gen=gen: method.sample(model, hidden, k, "euler", gen),
                device,
                args.repeat,
            )
            out["nfe"][k] = {
                "sample_s": total,
                "overhead": total / (k * call),
                "overhead_without_rounding": (total - rounding) / (k * call),
            }
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--nfe", default="16,64", help="comma-separated Euler step counts")
    p.add_argument("--batch", type=int, default=16, help="sampling batch")
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--emb-dim", type=int, default=128)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--json", default=None, help="write the numbers here")
    args = p.parse_args()
    args.nfe = [int(k) for k in args.nfe.split(",")]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    sampler = bench_sampler(args, device)
    print(
        f"device {device} threads {args.threads}: batch {args.batch} x 128 positions, "
        f"d_model {args.d_model}, {args.n_layers} layers, V {args.vocab} x {args.emb_dim}"
    )
    print(f"  one network call  {sampler['one_call_s'] * 1e3:9.2f} ms")
    print(f"  rounding (64 pos) {sampler['rounding_s'] * 1e3:9.2f} ms")
    for k, row in sampler["nfe"].items():
        print(
            f"  sample nfe={k:<4d}   {row['sample_s'] * 1e3:9.2f} ms   overhead "
            f"{row['overhead']:.3f} (target <= 1.10; without rounding "
            f"{row['overhead_without_rounding']:.3f})"
        )
    train = bench_training(args, device)
    print(
        f"  training: batch {args.train_batch} x 128, {train['parameters'] / 1e6:.2f}M trainable "
        f"parameters: {train['step_s'] * 1e3:.1f} ms/step, {train['tokens_per_s']:.0f} tokens/s"
    )
    if args.json:
        results = {
            "args": {k: v for k, v in vars(args).items()},
            "sampler": sampler,
            "training": train,
        }
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
