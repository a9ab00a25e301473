"""Inference steps and training throughput: DiffuSeq (DDPM, T = 2000) vs FM-seq2seq (Euler, NFE 1) vs AR.

    .venv/bin/python benchmarks/bench_speed.py [--preset ablation|fm-paper|diffuseq-paper]
        [--d-model 256] [--n-layers 4] [--n-heads 4] [--mlp-ratio 4] [--emb-dim 128]
        [--vocab 30522] [--seq-len 128] [--batch 16] [--T 2000] [--ddpm-steps 25,50 | --full-ddpm]
        [--clamp both|on|off] [--train-batch 16] [--train-steps 4] [--threads 0] [--json out.json]

Every number is measured in the run that prints it (nothing is hard-coded). Untrained, randomly
initialised weights: the cost of a network call does not depend on their values.

Backbone: one size for all three methods — ``d_model``, ``n_layers``, ``n_heads`` and
``mlp_ratio`` are the same; the rest is each method's own (DiffuSeq: up/down projections,
additive time MLP, learned positions, a trained N(0, 1)-initialised V × emb_dim embedding,
dropout 0.1 in training; FM-seq2seq: adaLN DiT, sin-cos positions, a frozen random V × emb_dim
embedding; AR: causal, RoPE, token embedding and V-way head). The default is the FM-seq2seq 4M
ablation DiT (hidden 256, 4 layers, 4 heads, mlp 4) on 128 positions (64 source + 64 target)
with V = 30,522 (bert-base-uncased) and emb_dim 128, batch 16. ``--preset fm-paper`` is the
FM-seq2seq paper model (512, 16 layers, 8 heads), ``--preset diffuseq-paper`` DiffuSeq's (768,
12 layers, 12 heads); explicit flags override the preset. Parameter counts (frozen embedding
included) and the time of one bare network call are printed per method.

(a) Inference: DiffuSeq's ``ddpm`` sampler makes exactly T network calls (T = 2000 in the paper)
    and clamps x̂₀ to the nearest embedding row at every step (its decoding default; ``--clamp``
    also times it unclamped); FM-seq2seq's ``euler`` sampler at NFE 1 makes one call plus the
    final nearest-neighbour rounding. The FM-seq2seq paper's claim is 2000 vs 1 steps; the script
    prints the measured wall-clock ratio next to the ratio of network calls.

    A T = 2000 DDPM run takes long on a CPU (0.3–1 s per step at the default size on 2 cores), so by
    default the same sampler loop is timed at two shorter lengths n₁ < n₂ (``--ddpm-steps``; a
    model with ``diffusion_steps`` = n — the same network and weights, only the schedule's numbers
    differ, so each step does the same work). A forward pre-hook stamps the start of every
    network call, so each run yields the wall time of each loop iteration (call + clamping +
    update + noise). Per-step cost is shown constant by the median step time of the n₁ run, the
    n₂ run, and the first and last quarters of the n₂ run (a spread above 10 % is flagged as
    unreliable); then t(T) = fixed + T × median step of the n₂ run, with fixed = t(n₂) − n₂ ×
    step (setup and the final lm_head argmax). Medians keep a shared machine's load spikes out;
    the plain proportional estimate t(n₂)·T/n₂ is printed too. ``--full-ddpm`` times the real
    T-step run instead.
(b) Training throughput: tokens/s = batch × seq_len / (median wall time of one step), a step being
    ``method.loss`` + backward + Adam step on a random token batch, after ``--warmup`` steps.

Layouts (cond = given positions): DiffuSeq and FM-seq2seq get the first half as source, AR
``[BOS]`` + source given and the target half generated; random content ids in [7, V).
``--threads 0`` (default) uses the CPU cores the load average leaves idle (at least 1): on a
shared machine more OpenMP threads than idle cores can make every call many times slower.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time

import torch
from _common import (
    add_threads_arg,
    auto_threads,
    half_batch,
    machine_line,
    median_time,
    once,
    timed,
    write_json,
)

from repro.methods import get_method
from repro.methods.base import Batch, Method

PAD, UNK, CLS, SEP, MASK, BOS, EOS = range(7)
SPECIALS = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS, sep_id=SEP, mask_id=MASK)
#: method name → (module, class), for methods not (yet) in ``repro.methods.REGISTRY``
CLASSES = {
    "diffuseq": ("repro.methods.diffuseq", "DiffuSeq"),
    "embedding_fm": ("repro.methods.embedding_fm", "EmbeddingFM"),
    "ar": ("repro.methods.ar", "Autoregressive"),
}
PRESETS = {
    "ablation": dict(d_model=256, n_layers=4, n_heads=4),  # FM-seq2seq 4M ablation DiT
    "fm-paper": dict(d_model=512, n_layers=16, n_heads=8),  # FM-seq2seq paper model
    "diffuseq-paper": dict(d_model=768, n_layers=12, n_heads=12),  # DiffuSeq (BERT-base size)
}
#: spread of the DDPM per-step costs above which the extrapolation is flagged
CONSTANT_TOL = 0.10
CPU = torch.device("cpu")  # the only device this benchmark runs on


def method_named(name: str) -> Method:
    """``repro.methods.get_method(name)``, or the class itself while it is not registered."""
    try:
        return get_method(name)
    except KeyError:
        module, cls = CLASSES[name]
        return getattr(importlib.import_module(module), cls)()


def model_cfg(name: str, args: argparse.Namespace, diffusion_steps: int | None = None) -> dict:
    """The method's ``model:`` block at the shared backbone size, plus the injected special ids."""
    cfg = dict(
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        mlp_ratio=args.mlp_ratio,
        **SPECIALS,
    )
    if name == "diffuseq":
        cfg.update(emb_dim=args.emb_dim, diffusion_steps=diffusion_steps or args.T)
    elif name == "embedding_fm":
        cfg.update(emb_dim=args.emb_dim, embeddings="random")
    return cfg


def build(name: str, args: argparse.Namespace, diffusion_steps: int | None = None):
    torch.manual_seed(0)  # same weights for every diffusion_steps (the schedule draws nothing)
    method = method_named(name)
    model = method.build_model(model_cfg(name, args, diffusion_steps), args.vocab, args.seq_len)
    if name == "embedding_fm":  # the zero-initialised output layer would make v ≡ 0
        with torch.no_grad():
            model.net.final.head.weight.normal_(0.0, 0.02)
    return method, model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for name, b in model.named_buffers() if name == "embedding"
    )


def batch_for(name: str, n: int, args: argparse.Namespace, seed: int = 0) -> Batch:
    """Random rows of ``args.seq_len`` ids; cond = the source half (AR: with [BOS] at 0)."""
    half = args.seq_len // 2
    batch = half_batch(n, args.seq_len, half, args.vocab, seed=seed)
    if name == "ar":
        batch.ids[:, 0] = BOS
        batch.ids[:, half - 1] = SEP
        batch.ids[:, -1] = EOS
    return batch


def prompt_only(batch: Batch) -> Batch:
    """What the sample stage passes: the target half is [PAD]."""
    return Batch(torch.where(batch.cond, batch.ids, PAD), batch.cond)


def call_seconds(model: torch.nn.Module, t: torch.Tensor, args: argparse.Namespace) -> float:
    """Median wall time of one bare network call on a (batch, seq_len, emb_dim) state."""
    x = torch.randn(args.batch, args.seq_len, args.emb_dim)
    with torch.inference_mode():
        return timed(lambda: model(x, t), CPU, args.call_reps)  # after a warm-up call


# ------------------------------------------------------------------------------------------------
# (a) inference
# ------------------------------------------------------------------------------------------------


def time_fm(args: argparse.Namespace) -> dict:
    method, model = build("embedding_fm", args)
    model.eval()
    cond = prompt_only(batch_for("embedding_fm", args.batch, args))

    def run() -> int:
        gen = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            return method.sample(model, cond, 1, "euler", gen).nfe

    calls = run()  # warm-up
    seconds = median_time(run, CPU, args.fm_reps)
    call = call_seconds(model, torch.full((args.batch,), 0.5), args)
    return {
        "method": "embedding_fm",
        "sampler": "euler",
        "steps": 1,
        "calls": calls,
        "clamp": None,
        "seconds": seconds,
        "measured": "direct",
        "call_s": call,
        "parameters": n_params(model),
    }


def time_ddpm(args: argparse.Namespace, clamp: bool) -> dict:
    """DDPM wall time at T steps: measured, or extrapolated from two shorter runs of the loop."""
    method = method_named("diffuseq")
    cond = prompt_only(batch_for("diffuseq", args.batch, args))

    def run(steps: int) -> dict:
        """One timed ``sample`` of ``steps`` DDPM steps, with the start time of every call."""
        _, model = build("diffuseq", args, diffusion_steps=steps)
        model.eval()
        gen = torch.Generator().manual_seed(0)
        starts: list[float] = []
        handle = model.register_forward_pre_hook(lambda mod, a: starts.append(time.perf_counter()))
        out: dict = {}

        def call() -> None:
            with torch.inference_mode():
                out["nfe"] = method.sample(model, cond, steps, "ddpm", gen, clamp=clamp).nfe

        try:
            total = once(call, CPU)
        finally:
            handle.remove()
        step_s = [b - a for a, b in zip(starts, starts[1:], strict=False)]  # one loop iteration
        return {
            "steps": steps,
            "calls": out["nfe"],
            "total_s": total,
            "step_s": step_s,
            "parameters": n_params(model),
        }

    run(4)  # warm-up (allocator, kernels)
    _, model = build("diffuseq", args, diffusion_steps=args.T)
    call = call_seconds(model.eval(), torch.full((args.batch,), args.T // 2), args)
    row = {"method": "diffuseq", "sampler": "ddpm", "steps": args.T, "clamp": clamp, "call_s": call}
    if args.full_ddpm:
        r = run(args.T)
        row.update(
            calls=r["calls"], seconds=r["total_s"], measured="direct", parameters=r["parameters"]
        )
        return row
    short, long = (run(n) for n in args.ddpm_steps)
    assert (short["calls"], long["calls"]) == tuple(args.ddpm_steps)
    quarter = len(long["step_s"]) // 4
    medians = {  # median seconds of one sampler step (network call + clamping + update)
        f"run of {short['steps']}": statistics.median(short["step_s"]),
        f"run of {long['steps']}": statistics.median(long["step_s"]),
        f"first quarter of {long['steps']}": statistics.median(long["step_s"][:quarter]),
        f"last quarter of {long['steps']}": statistics.median(long["step_s"][-quarter:]),
    }
    step = medians[f"run of {long['steps']}"]
    spread = (max(medians.values()) - min(medians.values())) / step
    fixed = long["total_s"] - long["steps"] * step  # setup, final lm_head argmax
    row.update(
        calls=args.T,
        seconds=fixed + args.T * step,
        measured="extrapolated",
        parameters=long["parameters"],
        fit={
            "runs": {str(r["steps"]): r["total_s"] for r in (short, long)},
            "median_step_s": medians,
            "step_s": step,
            "fixed_s": fixed,
            "spread": spread,
            "constant": spread <= CONSTANT_TOL,
            "proportional_s": long["total_s"] * args.T / long["steps"],
        },
    )
    return row


# ------------------------------------------------------------------------------------------------
# (b) training throughput
# ------------------------------------------------------------------------------------------------


def time_training(name: str, args: argparse.Namespace) -> dict:
    method, model = build(name, args)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batches = [batch_for(name, args.train_batch, args, seed=s) for s in range(4)]
    step_no = [0]

    def step() -> None:
        batch = batches[step_no[0] % len(batches)]
        step_no[0] += 1
        torch.manual_seed(step_no[0])  # as the training loop: reseeded before every step
        loss = method.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = timed(step, CPU, args.train_steps, warmup=args.warmup)
    tokens = args.train_batch * args.seq_len
    return {
        "method": name,
        "step_s": seconds,
        "tokens_per_step": tokens,
        "tokens_per_s": tokens / seconds,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


# ------------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="ablation",
        help="shared backbone size (explicit --d-model/--n-layers/--n-heads override)",
    )
    p.add_argument("--d-model", type=int)
    p.add_argument("--n-layers", type=int)
    p.add_argument("--n-heads", type=int)
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--emb-dim", type=int, default=128)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--seq-len", type=int, default=128, help="source half + target half")
    p.add_argument("--batch", type=int, default=16, help="sampling batch")
    p.add_argument("--T", type=int, default=2000, help="DiffuSeq diffusion steps")
    p.add_argument(
        "--ddpm-steps", default="25,50", help="two DDPM lengths n1,n2 timed and extrapolated to T"
    )
    p.add_argument("--full-ddpm", action="store_true", help="time the real T-step DDPM run")
    p.add_argument(
        "--clamp",
        choices=("both", "on", "off"),
        default="both",
        help="DiffuSeq clamping (on = its decoding default)",
    )
    p.add_argument("--fm-reps", type=int, default=5, help="timed FM NFE-1 runs (median)")
    p.add_argument("--call-reps", type=int, default=5, help="timed bare network calls (median)")
    p.add_argument("--train-batch", type=int, help="training batch (default: --batch)")
    p.add_argument("--train-steps", type=int, default=4, help="timed steps (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    add_threads_arg(p)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.train_batch is None:
        args.train_batch = args.batch
    args.ddpm_steps = sorted(int(n) for n in args.ddpm_steps.split(","))
    if len(args.ddpm_steps) != 2 or len(set(args.ddpm_steps)) != 2 or args.ddpm_steps[0] < 8:
        p.error("--ddpm-steps takes two different lengths >= 8, e.g. 25,50")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(auto_threads(args.threads))
    start = time.perf_counter()
    print(f"command: {' '.join(sys.argv)}")
    print(f"{machine_line()}  device cpu")
    print(
        f"backbone (all methods): d_model {args.d_model}, {args.n_layers} layers, "
        f"{args.n_heads} heads, mlp_ratio {args.mlp_ratio:g}; emb_dim {args.emb_dim}, "
        f"V {args.vocab}, seq_len {args.seq_len} ({args.seq_len // 2} source + "
        f"{args.seq_len - args.seq_len // 2} target); sampling batch {args.batch}, "
        f"training batch {args.train_batch}"
    )

    # (a) inference
    rows = [time_fm(args)]
    for clamp in {"both": (True, False), "on": (True,), "off": (False,)}[args.clamp]:
        rows.append(time_ddpm(args, clamp))
    print()
    print(
        f"{'method':<13} {'sampler':<8} {'clamp':<5} {'steps':>5} {'calls':>5} "
        f"{'params':>8} {'ms/call':>8} {'s/batch':>9} {'s/sample':>9}  measured"
    )
    for r in rows:
        clamp = "-" if r["clamp"] is None else ("on" if r["clamp"] else "off")
        r["seconds_per_sample"] = r["seconds"] / args.batch
        print(
            f"{r['method']:<13} {r['sampler']:<8} {clamp:<5} {r['steps']:>5} {r['calls']:>5} "
            f"{r['parameters'] / 1e6:>7.2f}M {r['call_s'] * 1e3:>8.1f} {r['seconds']:>9.3f} "
            f"{r['seconds_per_sample']:>9.4f}  {r['measured']}"
        )
    for r in rows:
        if r.get("fit"):
            f = r["fit"]
            flag = "constant" if f["constant"] else "NOT constant: extrapolation unreliable"
            runs = ", ".join(f"{n} steps {t:.2f} s" for n, t in f["runs"].items())
            meds = " | ".join(f"{k} {v * 1e3:.1f}" for k, v in f["median_step_s"].items())
            print(
                f"  ddpm clamp={'on' if r['clamp'] else 'off'}: timed {runs}\n"
                f"    median ms/step: {meds}\n"
                f"    -> spread {f['spread'] * 100:.1f}%: {flag}; t({args.T}) = fixed "
                f"{f['fixed_s']:.2f} s + {args.T} x {f['step_s'] * 1e3:.1f} ms = "
                f"{r['seconds']:.1f} s (proportional t({args.T}) = {f['proportional_s']:.1f} s)"
            )
    fm = rows[0]
    ratios = {}
    for r in rows[1:]:
        key = f"ddpm_clamp_{'on' if r['clamp'] else 'off'}_over_fm_nfe1"
        ratios[key] = {"wall": r["seconds"] / fm["seconds"], "calls": r["calls"] / fm["calls"]}
        print(
            f"ratio DiffuSeq ddpm T={args.T} (clamp {'on' if r['clamp'] else 'off'}, "
            f"{r['measured']}) / FM-seq2seq euler NFE=1: wall-clock "
            f"{ratios[key]['wall']:.0f}x, network calls {ratios[key]['calls']:.0f}x"
        )
    call_ratio = rows[1]["call_s"] / fm["call_s"]
    ratios["call_diffuseq_over_fm"] = call_ratio
    print(
        f"ratio one network call DiffuSeq / FM-seq2seq (bare forward, same backbone size): "
        f"{call_ratio:.2f}; FM NFE=1 sample / its one call: {fm['seconds'] / fm['call_s']:.2f} "
        f"(the rest is noise, source embedding and the nearest-neighbour rounding)"
    )

    # (b) training throughput
    print()
    train = [time_training(name, args) for name in ("diffuseq", "embedding_fm", "ar")]
    print(
        f"{'method':<13} {'trainable':>9} {'ms/step':>9} {'tokens/s':>9}   "
        f"(batch {args.train_batch} x {args.seq_len} tokens, median of {args.train_steps} "
        f"steps after {args.warmup})"
    )
    for r in train:
        print(
            f"{r['method']:<13} {r['trainable_parameters'] / 1e6:>8.2f}M "
            f"{r['step_s'] * 1e3:>9.1f} {r['tokens_per_s']:>9.0f}"
        )
    by = {r["method"]: r["tokens_per_s"] for r in train}
    for a, b in (("embedding_fm", "diffuseq"), ("embedding_fm", "ar"), ("diffuseq", "ar")):
        ratios[f"train_{a}_over_{b}"] = by[a] / by[b]
        print(f"ratio training tokens/s {a} / {b}: {by[a] / by[b]:.2f}")
    total = time.perf_counter() - start
    print(f"\ntotal {total:.0f} s")
    results = {
        "args": vars(args),
        "inference": rows,
        "training": train,
        "ratios": ratios,
        "total_s": total,
    }
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
