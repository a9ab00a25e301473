"""Discrete flow matching (``dfm``) sampler overhead and throughput (CPU by default).

    .venv/bin/python benchmarks/bench_dfm.py [--device cpu|cuda] [--threads 0]
        [--configs small,paper] [--nfe 33] [--batch 4] [--vocab 50260] [--json out.json]

Rows of the ``conditional`` layout, 128 positions: 64 given (prompt) + 64 generated; V = 50,260
(GPT-2's 50,257 + [PAD] [MASK] [BOS], KL-flow's tokenizer), so the fp32 softmax and fp64
categorical draws over V have their real cost. Untrained weights, randomised (the zero-initialised
output and adaLN-Zero modulation would make every p_{1|t} uniform and every step alike).

* ``small``: d_model 256, 4 layers, 4 heads (``--d-model``, ``--n-layers``, ``--n-heads``), batch
  ``--batch`` (4), NFE ``--nfe`` (33: 32 steps + the argmax read-out for ``klflow``, 33 steps for
  ``fmlib``); one call takes ~0.3 s on one CPU core (the V-wide head dominates), so the default
  run takes ~2 minutes.
* ``paper``: ``dfm_150m`` (d 768, 12 layers, 6 heads), batch ``--paper-batch`` (2), NFE
  ``--paper-nfe`` (33) — a GPU configuration; on the CPU it takes minutes.

Each configuration is sampled with the two solvers: ``klflow`` (the default: ``jump: linear,
readout: argmax``, κ = 2t − t²) and ``fmlib`` (``jump: exp, readout: none``).

* Sampler overhead = time(sample(nfe=k)) / (k × time of one network call), per round of
  ``--repeat`` rounds (after a warm-up round), median over rounds; each round times
  ``CALLS_PER_REP`` (3) bare calls right before its sample runs, so a load drifting on a shared
  machine hits numerator and denominator alike. 1.00 means that the jumps, the fp64 draws and the
  bookkeeping cost nothing beyond the k calls (target ≤ 1.10). ``in_run`` = sample wall time / the
  wall time of its own network calls, timed by forward hooks inside the same sample call.
* samples/s = batch / sample wall time. On CUDA everything runs under bf16 autocast and
  ``torch.inference_mode`` as the sample stage does; ``--threads 0`` (default) uses the cores the
  load average leaves idle.
* Training throughput (``small`` only): tokens/s of loss + backward + Adam step, batch
  ``--train-batch``, median over ``--train-steps`` steps after a warm-up step.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from _common import (
    add_sampler_args,
    auto_threads,
    autocast,
    half_batch,
    machine_line,
    overhead_rounds,
    overhead_summary,
    parse_sampler_args,
    sampler_config,
    timed,
    write_json,
)

from repro.methods.dfm import DFM

GIVEN, SEQ = 64, 128
PAPER = dict(d_model=768, n_layers=12, n_heads=6)
SOLVERS = {
    "klflow": dict(jump="linear", readout="argmax"),
    "fmlib": dict(jump="exp", readout="none"),
}
MASK_ID = 50258


def build(cfg: argparse.Namespace, device: torch.device):
    torch.manual_seed(0)
    model = DFM().build_model(
        dict(
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            scheduler="klflow_quadratic",
            mask_id=MASK_ID,
            pad_id=50257,
        ),
        vocab_size=cfg.vocab,
        seq_len=SEQ,
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modulation" in name or "head" in name:  # zero-initialised ones
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.to(device).eval()


def bench_sampler(cfg: argparse.Namespace, device: torch.device) -> dict:
    method, model = DFM(), build(cfg, device)
    batch = half_batch(cfg.batch, SEQ, GIVEN, cfg.vocab - 3, device, fill=50257)
    x = torch.where(batch.cond, batch.ids, MASK_ID)
    t = torch.full((cfg.batch,), 0.5, device=device)

    def one_call() -> None:
        model(x, t)

    def run(k: int, opts: dict) -> None:
        gen = torch.Generator(device).manual_seed(0)
        res = method.sample(model, batch, k, "mixture_euler", gen, **opts)
        assert res.nfe == k

    out: dict = {"parameters": sum(p.numel() for p in model.parameters()), "nfe": {}}
    with torch.inference_mode(), autocast(device):
        out["one_call_s"] = timed(one_call, device, 5)
        for k in cfg.nfe:  # both solvers in turns, after a warm-up round
            rounds = overhead_rounds(
                one_call,
                {name: partial(run, k, opts) for name, opts in SOLVERS.items()},
                model,
                device,
                cfg.repeat,
            )
            out["nfe"][k] = {}
            for name, reps in rounds.items():
                assert all(r.calls == k for r in reps), ([r.calls for r in reps], k)
                row = overhead_summary(reps, k)
                row["samples_per_s"] = cfg.batch / row["sample_s"]
                out["nfe"][k][name] = row
    return out


def bench_training(args: argparse.Namespace, device: torch.device) -> dict:
    method, model = DFM(), build(args, device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = half_batch(args.train_batch, SEQ, GIVEN, args.vocab - 3, device, fill=50257)

    def step() -> None:
        with autocast(device):
            loss = method.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = timed(step, device, args.train_steps)
    return {"step_s": seconds, "tokens_per_s": args.train_batch * SEQ / seconds}


def print_sampler(name: str, cfg: argparse.Namespace, device: torch.device, res: dict) -> None:
    print(
        f"[{name}] device {device} threads {torch.get_num_threads()}: batch {cfg.batch} x {SEQ} "
        f"positions ({SEQ - GIVEN} generated), d_model {cfg.d_model}, {cfg.n_layers} layers, "
        f"{cfg.n_heads} heads, V {cfg.vocab} ({res['parameters'] / 1e6:.1f}M parameters)"
    )
    print(f"  one network call  {res['one_call_s'] * 1e3:9.2f} ms")
    for k, by_solver in res["nfe"].items():
        for solver, row in by_solver.items():
            print(
                f"  sample nfe={k:<4d} {solver:<7} {row['sample_s'] * 1e3:9.1f} ms (call "
                f"{row['call_s'] * 1e3:.1f} ms)  overhead {row['overhead']:.3f}  in_run "
                f"{row['in_run']:.3f} (target <= 1.10)  {row['samples_per_s']:.2f} samples/s",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sampler_args(
        p,
        configs="small",
        nfe="33",
        nfe_help="comma-separated NFE budgets (small)",
        batch=4,
        vocab=50260,
    )
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--paper-batch", type=int, default=2)
    p.add_argument("--paper-nfe", default="33")
    p.add_argument("--paper-repeat", type=int, default=2)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--json", default=None, help="write the numbers here")
    args, configs = parse_sampler_args(p)
    torch.set_num_threads(auto_threads(args.threads))
    device = torch.device(args.device)
    print(machine_line())
    results: dict = {"args": vars(args), "sampler": {}}
    for name in configs:
        cfg = sampler_config(name, args, PAPER)
        res = bench_sampler(cfg, device)
        print_sampler(name, cfg, device, res)
        results["sampler"][name] = {"config": vars(cfg), **res}
    if "small" in configs:
        train = bench_training(args, device)
        print(
            f"  training: batch {args.train_batch} x {SEQ}: {train['step_s'] * 1e3:.1f} ms/step, "
            f"{train['tokens_per_s']:.0f} tokens/s"
        )
        results["training"] = train
    write_json(args.json, results)


if __name__ == "__main__":
    main()
