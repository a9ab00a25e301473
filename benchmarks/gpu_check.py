"""One command for the first GPU: does the pipeline run there, agree with the CPU, and how fast is it.

    .venv/bin/python benchmarks/gpu_check.py [--device cuda|cpu] [--steps 50] [--nfe 4,16]
        [--methods ar,diffuseq,embedding_fm,klflow,dfm] [--parts runs,agrees,fast,fits]
        [--config config/config.yaml] [--smoke config/smoke.yaml] [--peak-tflops F]
        [--out-dir results/gpu_check] [--keep-work]

``make gpu-check`` runs it with ``--device cuda`` (the default: without CUDA it stops with an error,
it never falls back to the CPU). ``--device cpu`` runs the same code at tiny sizes (the test suite
does, in seconds). It prints one table and writes ``gpu_check.json`` and ``gpu_check.md`` under
``--out-dir``; the exit status is 1 when a hard check (parts ``runs`` and ``agrees``) fails.

Parts (every row of the table names its threshold):

``runs`` (hard) - per method at smoke size (the smoke config's experiments ``ar``, ``diffuseq``,
    ``fm``, ``klflow``, ``dfm`` on a small ``syn_paraphrase``, prepared, tokenized and trained by
    the stages' own entry points: ``repro.data.prepare``, ``repro.tokenization``, ``repro.train``,
    ``repro.export_embeddings`` (FM reads the DiffuSeq it follows), ``repro.sample``,
    ``repro.score``). Training: ``--steps`` steps with ``train.precision`` bf16-mixed on CUDA
    (32-true on the CPU), through Lightning with ``devices=1`` as the SLURM profile runs it; the
    first run is stopped by its time budget after one step (``repro.train`` exits 75, state saved
    in ``_work/``) and the second resumes it to the end, as a SLURM retry does. A forward hook
    checks that the network really computes in bf16. Then ``sample`` at two NFEs on the device and
    ``score``. With two GPUs visible, ``python -m repro.train --devices 2`` trains the AR model too.
``agrees`` (hard) - the trained weights on the CPU and on the device, both fp32 (TF32 off): the
    same validation batch gives the same loss (relative difference <= ``LOSS_RTOL``), and the
    samplers that are deterministic given their noise (AR greedy, DiffuSeq DDIM, FM Euler, KL-flow
    basic) give the same tokens (share of equal generated tokens >= ``TOKEN_AGREEMENT``). The CPU
    and CUDA generators give different streams for one seed, so while these run every torch draw
    (``rand``, ``randn``, ``*_like``, ``multinomial``, ``uniform_``, ``normal_``) is taken from
    one CPU generator and copied to the device (:func:`cpu_noise`): both devices see the same
    noise. The bf16 loss is shown beside (soft, ``BF16_LOSS_RTOL``). DFM's sampler draws
    categorical tokens at every step: its token agreement is shown, not judged.
``fast`` (soft) - at the papers' backbones (FM-seq2seq's 60M DiT and DiffuSeq's 91M at V 30,522,
    KL-flow's 150M at V 50,257; L 128; each experiment's per-GPU batch; bf16): training tokens/s
    and MFU through ``repro.train.run.train`` (Lightning) and through a plain PyTorch loop over the
    same model, optimizer, schedule, clipping and EMAs (Lightning overhead target <=
    ``LIGHTNING_OVERHEAD``); sampler overhead of every configured sampler of every method = time
    of ``sample(nfe=k)`` / (k x one network call) (target <= ``SAMPLER_OVERHEAD``; AR decodes with
    a KV cache, so its calls are cheaper than a full one: its target applies to ``in_run``, the
    sample time over its own calls' time); the peak memory of KL-flow sampling (its V-wide state)
    at L 1,024 and the FineFineWeb evaluation batch (target < 80 GB).
``fits`` (soft) - every training job of ``--config`` (dataset x experiment, as the DAG trains
    them): one optimizer step (all ``accumulate`` micro-batches) at the configured per-GPU batch,
    sequence length and precision on this device: it fits (no out-of-memory) and its seconds per
    step x ``train.steps`` = the job's GPU hours. ``gpu_check.json`` holds them under
    ``cost_calibration`` (``gpu``, ``seconds_per_step[experiment][dataset]``, per-job rows) for a
    cost plan to read. FM experiments that read exported DiffuSeq embeddings get random ones of the
    same width (the same compute).

On the CPU the ``fast`` and ``fits`` models are shrunk (``TINY``): the numbers prove the code runs,
they calibrate nothing (``cost_calibration.valid`` is false).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import logging
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    auto_threads,
    autocast,
    half_batch,
    machine_line,
    overhead_rounds,
    overhead_summary,
    sync,
)
from bench_klflow import analytic_memory, lm_prompt
from torch import nn

from repro import methods
from repro.config_file import load_config_file
from repro.data import data_subconfig
from repro.export_embeddings import main as export_embeddings_main
from repro.methods import REGISTRY
from repro.methods.base import Batch
from repro.score import score
from repro.tokenization.__main__ import main as tokenization_main
from repro.tokenization.arrays import load_tokenized
from repro.train import checkpoint, config
from repro.train import run as training
from repro.train.cli import EXIT_INCOMPLETE
from repro.train.cli import main as train_main
from repro.workflow.catalogue import Catalogue
from repro.workflow.spec import resolve_experiments

ROOT = Path(__file__).resolve().parents[1]

# ---- thresholds ---------------------------------------------------------------------------------
LOSS_RTOL = 1e-4  #: fp32 loss, CPU vs device, relative
BF16_LOSS_RTOL = 5e-2  #: bf16 autocast loss vs fp32 loss on the device, relative (soft)
TOKEN_AGREEMENT = 0.99  #: share of equal generated tokens, deterministic samplers
LIGHTNING_OVERHEAD = 0.05  #: Lightning step time / plain loop step time - 1
SAMPLER_OVERHEAD = 1.05  #: sample(nfe=k) / (k x one network call)
MEMORY_LIMIT = 80e9  #: bytes: one 80 GB GPU
BUDGET_S = 480  #: the whole check on one H100

# ---- what runs ------------------------------------------------------------------------------------
METHODS = ("ar", "diffuseq", "embedding_fm", "klflow", "dfm")
#: method -> the smoke experiment of ``runs`` / ``agrees`` and the sampler its ``runs`` row uses
SMOKE = {
    "ar": ("ar", "ancestral"),
    "diffuseq": ("diffuseq", "ddim_gap"),
    "embedding_fm": ("fm", "euler"),
    "klflow": ("klflow", "hybrid"),
    "dfm": ("dfm", "mixture_euler"),
}
#: samplers deterministic given their noise: their tokens must agree (DFM's: shown only)
DETERMINISTIC = {"ar": "greedy", "diffuseq": "ddim_gap", "embedding_fm": "euler", "klflow": "basic"}
SMOKE_DATASET = "syn_paraphrase"
SMOKE_SIZE = {"train": 512, "validation": 32, "test": 32}
#: method -> (paper experiment of config.yaml, dataset giving V, L and the evaluation batch)
BACKBONES = {
    "ar": ("ar_150m", "tinystories"),
    "diffuseq": ("diffuseq", "qqp"),
    "embedding_fm": ("fm_seq2seq", "qqp"),
    "klflow": ("klflow_150m", "tinystories"),
    "dfm": ("dfm_150m", "tinystories"),
}
#: the training throughput rows (the papers' three backbones)
THROUGHPUT = ("embedding_fm", "diffuseq", "klflow")
MEMORY_DATASET = "finefineweb"  #: KL-flow's L 1,024 task
#: vocabulary of the pinned pretrained tokenizers of config.yaml (no download in this check)
PRETRAINED_VOCAB = {"bert-base-uncased": 30522, "gpt2": 50257}
#: the CPU run's sizes for ``fast`` and ``fits`` (the paper's would take hours on a CPU)
TINY = {"d_model": 32, "n_layers": 1, "n_heads": 2, "emb_dim": 16, "time_dim": 32}
TINY_DATA = {"vocab": 256, "seq_len": 16, "batch": 4}
#: model keys that change no tensor shape or cost (jobs differing only there are timed once)
NEUTRAL_KEYS = ("time_max_period", "time_param", "t_max", "beta", "emb_seed", "embeddings")
#: dense bf16 peak FLOP/s by device name (longest matching key wins); --peak-tflops overrides
PEAK_BF16 = {
    "H100": 989e12,
    "H100 PCIe": 756e12,
    "H200": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
}
SPECIALS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4, "bos": 5, "eos": 6}

log = logging.getLogger("gpu_check")


# ------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------


class Report:
    """The rows of the one table: part, check, subject, value, threshold, status, hard."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.data: dict[str, Any] = {}

    def add(
        self,
        part: str,
        check: str,
        subject: str,
        value: str,
        threshold: str,
        ok: bool | None,
        *,
        hard: bool,
        note: str = "",
    ) -> None:
        status = "INFO" if ok is None else ("PASS" if ok else "FAIL")
        row = dict(part=part, check=check, subject=subject, value=value, threshold=threshold,
                   status=status, hard=hard, note=note)
        self.rows.append(row)
        print(f"[{part}] {subject}: {check} = {value} ({threshold}) {status} {note}",
              file=sys.stderr, flush=True)

    def error(self, part: str, check: str, subject: str, err: BaseException, *, hard: bool) -> None:
        msg = f"{type(err).__name__}: {err}".replace("\n", " ")[:300]
        self.add(part, check, subject, "error", "runs without error", False, hard=hard, note=msg)

    @property
    def hard_failures(self) -> list[dict]:
        return [r for r in self.rows if r["hard"] and r["status"] == "FAIL"]

    def table(self, markdown: bool = False) -> str:
        cols = ("part", "check", "subject", "value", "threshold", "status", "note")
        cells = [[str(r[c]) + ("*" if c == "status" and r["hard"] else "") for c in cols]
                 for r in self.rows]
        if markdown:
            lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
            return "\n".join(lines)
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        widths[-1] = len(cols[-1])  # the note runs on
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
                         + [fmt.format(*row).rstrip() for row in cells])


def guarded(report: Report, part: str, check: str, subject: str, hard: bool,
            fn: Callable[[], Any]) -> Any:
    """``fn()``; an exception becomes a FAIL row (hard if the part is) and None."""
    try:
        return fn()
    except Exception as err:  # one broken method must not hide the others' rows
        log.exception("%s / %s / %s failed", part, check, subject)
        report.error(part, check, subject, err, hard=hard)
        return None
    finally:
        free_memory()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The stages' stdout (JSON lines) goes to stderr: stdout carries only the table."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def cpu_noise(seed: int) -> Iterator[None]:
    """Every torch random draw inside comes from one CPU generator seeded ``seed`` and is copied to
    the device asked for, whatever generator the caller passed: the CPU and a GPU then see the same
    noise (their own generators give different streams for the same seed)."""
    g = torch.Generator().manual_seed(seed)
    saved = {n: getattr(torch, n) for n in ("rand", "randn", "rand_like", "randn_like", "multinomial")}
    saved_t = {n: getattr(torch.Tensor, n) for n in ("uniform_", "normal_")}

    def fresh(name: str) -> Callable:
        def draw(*size, generator=None, device=None, **kw):
            out = saved[name](*size, generator=g, **kw)
            return out if device is None else out.to(device)
        return draw

    def like(name: str) -> Callable:
        def draw(t, *, dtype=None, device=None, **kw):
            out = saved[name](t.shape, generator=g, dtype=dtype or t.dtype)
            return out.to(device or t.device)
        return draw

    def multinomial(p, n, replacement=False, *, generator=None):
        return saved["multinomial"](p.detach().float().cpu(), n, replacement, generator=g).to(p.device)

    def in_place(name: str) -> Callable:
        def draw(self, a=None, b=None, *, generator=None):
            args = [x for x in (a, b) if x is not None]
            tmp = saved_t[name](torch.empty(self.shape, dtype=self.dtype), *args, generator=g)
            return self.copy_(tmp)
        return draw

    patches = {"rand": fresh("rand"), "randn": fresh("randn"), "rand_like": like("rand"),
               "randn_like": like("randn"), "multinomial": multinomial}
    try:
        for name, fn in patches.items():
            setattr(torch, name, fn)
        for name in saved_t:
            setattr(torch.Tensor, name, in_place(name))
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch, name, fn)
        for name, fn in saved_t.items():
            setattr(torch.Tensor, name, fn)


def amp(precision: str, device: torch.device):
    """The autocast of a Lightning ``precision`` string, for the plain loop."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def linear_flops_per_token(model: nn.Module, n_layers: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 x the weights of every ``nn.Linear`` (forward + backward) plus
    12 x layers x d_model x L for attention scores and values; embedding lookups count nothing."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return 6.0 * linear + 12.0 * n_layers * d_model * seq_len


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    keys = [k for k in PEAK_BF16 if k in name]
    return PEAK_BF16[max(keys, key=len)] if keys else None


def gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def load_config(path: Path) -> dict:
    return load_config_file(path)  # expanded as the pipeline sees it (`seeds: N`, aliases copied)


def dataset_shape(cat: Catalogue, dataset: str) -> tuple[int, int]:
    """(vocab size, seq_len) of a paper dataset; the vocabulary from its pinned tokenizer id."""
    src = cat.source(dataset)
    tok = cat.datasets[src].get("tokenizer", {})
    name = tok.get("pretrained", {}).get("id")
    if name not in PRETRAINED_VOCAB:
        raise ValueError(
            f"datasets.{src}.tokenizer: vocabulary of {name or tok!r} unknown to this check "
            f"(known: {sorted(PRETRAINED_VOCAB)}); add it to PRETRAINED_VOCAB"
        )
    return PRETRAINED_VOCAB[name], int(cat.datasets[dataset]["seq_len"])


def short_train(train: dict, steps: int, precision: str, val_batches: int) -> dict:
    """An experiment's ``train`` block cut to ``steps`` steps (warm-up shortened to fit, one
    validation and one checkpoint at the end), at ``precision``."""
    out = dict(train, steps=steps, precision=precision, val_batches=val_batches,
               val_every=steps, ckpt_every=steps)
    if out.get("warmup_steps", 0) > 0:
        out["warmup_steps"] = min(out["warmup_steps"], max(1, steps // 5))
    return out


class Shape:
    """Model cfg, vocabulary, length and batch of one network: paper-sized, or tiny (CPU run).

    FM experiments that read exported DiffuSeq embeddings get random ones of the same width (the
    same shapes and cost; the file exists only after the DAG ran)."""

    def __init__(self, exp: dict, vocab: int, seq_len: int, batch: int, tiny: bool) -> None:
        model = dict(exp.get("model", {}))
        if exp["method"] == "embedding_fm" and str(model.get("embeddings", "")).startswith("from:"):
            model["embeddings"] = "random"
        if tiny:
            model.update({k: v for k, v in TINY.items() if k in model})
            vocab, seq_len, batch = TINY_DATA["vocab"], TINY_DATA["seq_len"], TINY_DATA["batch"]
        self.method, self.model = exp["method"], model
        self.vocab, self.seq_len, self.batch = vocab, seq_len, batch

    def build(self, device: torch.device, seed: int = 0, **model: Any) -> nn.Module:
        """The method's network (special ids injected, ``model`` keys overriding) on ``device``;
        built there directly when the method allows it (a 1.5B initialisation on a CPU is slow)."""
        method = methods.get_method(self.method)
        cfg = training.inject_specials({**self.model, **model}, SPECIALS, "gpu_check")
        if device.type == "cuda":
            try:
                torch.manual_seed(seed)
                with torch.device(device):
                    return method.build_model(dict(cfg), self.vocab, self.seq_len)
            except RuntimeError:  # a CPU generator inside the initialisation: build, then move
                free_memory()
        torch.manual_seed(seed)
        return method.build_model(dict(cfg), self.vocab, self.seq_len).to(device)

    def batch_of(self, n: int, device: torch.device, seed: int = 0) -> Batch:
        """``n`` random rows, the first half given."""
        return half_batch(n, self.seq_len, self.seq_len // 2, self.vocab, device, seed=seed)


def plain_steps(
    method_name: str,
    model: nn.Module,
    train: dict,
    batch: Batch,
    device: torch.device,
    precision: str,
    warmup: int,
    timed: int,
) -> list[float]:
    """Seconds of ``timed`` optimizer steps (after ``warmup``) of a plain PyTorch loop: the
    optimizer, schedule and EMAs of :class:`repro.train.module.TrainModule`, ``accumulate``
    micro-batches of ``method.loss`` (reseeded as the train stage does), clipping, step."""
    tc = config.TrainConfig.from_dict(train)
    method = methods.get_method(method_name)
    from repro.train.module import TrainModule  # Lightning

    module = TrainModule(method, model, tc, "gpu_check")
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    times = []
    for i in range(warmup + timed):
        sync(device)
        start = time.perf_counter()
        for a in range(tc.accumulate):
            torch.manual_seed(i * tc.accumulate + a)
            with amp(precision, device):
                loss = method.loss(model, batch) / tc.accumulate
            loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        for ema in module.emas.values():
            ema.update(model)
        sync(device)
        times.append(time.perf_counter() - start)
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(f"plain loop: loss {float(loss.detach())} is not finite")
    return times[warmup:]


def make_probe(device: torch.device):
    """A Lightning callback: the wall time at the end of every training batch (device synced) and
    the output dtype of the network's first ``nn.Linear`` (bf16 under bf16 autocast)."""
    import lightning.pytorch as pl

    class Probe(pl.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []
            self.dtype: torch.dtype | None = None
            self._handle = None

        def on_train_start(self, trainer, pl_module) -> None:
            first = next(m for m in pl_module.model.modules() if isinstance(m, nn.Linear))

            def hook(mod, args, out) -> None:
                self.dtype = out.dtype
                self._handle.remove()

            self._handle = first.register_forward_hook(hook)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync(device)
            self.ends.append(time.perf_counter())

        def step_seconds(self, skip: int) -> float:
            return statistics.median(np.diff(self.ends)[skip:])

    return Probe()


# ------------------------------------------------------------------------------------------------
# part runs: the stages at smoke size
# ------------------------------------------------------------------------------------------------


def stage(name: str, main: Callable[[list[str]], int], argv: list[str], want: int = 0) -> None:
    """Run a stage's ``main(argv)`` in this process; its exit status must be ``want``."""
    with quiet():
        rc = main(argv)
    if rc != want:
        raise RuntimeError(f"{name} {' '.join(argv[:2])} ... exited {rc}, expected {want}")


class SmokeData:
    """``syn_paraphrase`` of the smoke config (fewer rows), prepared and tokenized by the stages."""

    def __init__(self, smoke: dict, work: Path) -> None:
        from repro.data.prepare import main as prepare_main

        ds = copy.deepcopy(smoke["datasets"][SMOKE_DATASET])
        ds["synthetic"]["size"] = dict(SMOKE_SIZE)
        self.ds, self.work = ds, work
        self.data, self.tokenizer = work / "data", work / "tokenizer.json"
        stage("repro.data.prepare", prepare_main, ["--dataset", SMOKE_DATASET, "--config-json",
              json.dumps(data_subconfig(ds)), "--out-dir", str(self.data)])
        stage("repro.tokenization", tokenization_main, [
            "train", "--data-dir", str(self.data), "--kind", ds["kind"], "--config-json",
            json.dumps(ds["tokenizer"]), "--out", str(self.tokenizer)])
        self._layouts: dict[str, Path] = {}

    def layout(self, method_name: str) -> Path:
        """The tokenized directory of the method's seq2seq layout (encoded once)."""
        layout = REGISTRY[method_name].layouts[self.ds["kind"]]
        if layout not in self._layouts:
            out = self.work / "tokenized" / layout
            stage("repro.tokenization", tokenization_main, [
                "encode", "--data-dir", str(self.data), "--tokenizer", str(self.tokenizer),
                "--layout", layout, "--seq-len", str(self.ds["seq_len"]), "--options-json",
                json.dumps(self.ds.get("layouts", {}).get(layout, {})), "--out-dir", str(out)])
            self._layouts[layout] = out
        return self._layouts[layout]


def part_runs(ctx: argparse.Namespace, report: Report) -> dict[str, Path]:
    """Train (stop + resume), sample at two NFEs and score every method; the checkpoints."""
    smoke = ctx.smoke_cfg
    data = guarded(report, "runs", "prepare + tokenize", SMOKE_DATASET, True,
                   lambda: SmokeData(smoke, ctx.work / "smoke"))
    if data is None:
        return {}
    ckpts: dict[str, Path] = {}
    for name in ctx.methods:
        ckpt = guarded(report, "runs", "train", name, True, lambda n=name: smoke_train(ctx, data, n, report))
        if ckpt is None:
            continue
        ckpts[name] = ckpt
        guarded(report, "runs", "sample + score", name, True,
                lambda n=name, c=ckpt: smoke_sample(ctx, data, n, c, report))
    if ctx.device.type == "cuda" and "ar" in ctx.methods:
        if torch.cuda.device_count() >= 2:
            guarded(report, "runs", "train devices=2", "ar", True, lambda: two_devices(ctx, data, report))
        else:
            report.add("runs", "train devices=2", "ar", "skipped", "needs 2 GPUs", None, hard=False,
                       note=f"{torch.cuda.device_count()} GPU visible")
    return ckpts


def smoke_run_cfg(ctx: argparse.Namespace, name: str) -> dict:
    exp = ctx.smoke_cat.experiments[SMOKE[name][0]]
    cfg = {"method": exp["method"], "model": dict(exp["model"]),
           "train": short_train(exp["train"], ctx.steps, ctx.precision, val_batches=1)}
    src = ctx.smoke_cat.embedding_source(SMOKE[name][0])
    if src is not None:  # the DAG's edge: this run reads the exported DiffuSeq embeddings
        emb = ctx.work / "embeddings" / src / "embeddings.npy"
        if not emb.exists():
            raise RuntimeError(f"{name} reads the embeddings of experiment {src!r}: train "
                               "diffuseq first (--methods lists it before)")
        cfg["model"]["embeddings"] = str(emb)
    return cfg


def smoke_train(ctx: argparse.Namespace, data: SmokeData, name: str, report: Report) -> Path:
    data_dir = data.layout(name)
    cfg = smoke_run_cfg(ctx, name)
    out = ctx.work / "train" / name / "model.ckpt"
    argv = ["--data", str(data_dir), "--out", str(out), "--config-json", json.dumps(cfg),
            "--threads", str(ctx.threads), "--accelerator", ctx.accelerator, "--devices", "1"]
    start = time.perf_counter()
    # a time budget spent before the first step ends: stop after it, exit 75, state in _work/
    stage("repro.train", train_main, [*argv, "--max-minutes", "1", "--stop-margin-s", "59.999"],
          want=EXIT_INCOMPLETE)
    stopped = (out.parent / "_work" / "last.ckpt").exists()
    probe = make_probe(ctx.device)
    with quiet():  # the retry: resumes _work/last.ckpt to the end
        summary = training.train(data_dir, out, cfg, threads=ctx.threads,
                                 accelerator=ctx.accelerator, devices=1, callbacks=[probe])
    seconds = time.perf_counter() - start
    want_dtype = torch.bfloat16 if ctx.precision == "bf16-mixed" else torch.float32
    loss = summary["train_loss"]
    ok = (stopped and summary["completed"] and summary["resumed_from"] == 1
          and summary["steps"] == ctx.steps and out.exists() and loss is not None
          and math.isfinite(loss) and probe.dtype == want_dtype)
    report.add("runs", f"train {ctx.steps} steps ({ctx.precision}), stop + resume", name,
               f"exit 75 at step 1, resumed {summary['resumed_from']}->{summary['steps']}, "
               f"loss {loss:.3f}, net {str(probe.dtype).replace('torch.', '')}, {seconds:.0f} s",
               f"exit 75 + resume to {ctx.steps}, finite loss, {str(want_dtype)[6:]}", ok, hard=True)
    if name == "diffuseq":  # the DAG's export_embeddings stage: FM's frozen input
        emb = ctx.work / "embeddings" / SMOKE["diffuseq"][0] / "embeddings.npy"
        stage("repro.export_embeddings", export_embeddings_main, ["--ckpt", str(out), "--out", str(emb)])
    return out


def smoke_sample(ctx: argparse.Namespace, data: SmokeData, name: str, ckpt: Path,
                 report: Report) -> None:
    from repro.sample import sample

    exp = ctx.smoke_cat.experiments[SMOKE[name][0]]
    sampler = SMOKE[name][1]
    n = SMOKE_SIZE["test"]
    metrics = {k: ctx.smoke_cfg["metrics"][k] for k in ("bleu", "dist_1")}
    parts = []
    for nfe in ctx.nfe:
        out = ctx.work / "samples" / name / f"{sampler}_nfe{nfe}.jsonl"
        start = time.perf_counter()
        with quiet():
            written = sample(ckpt, data.layout(name), data.tokenizer, data.data / "test.jsonl",
                             "test", sampler, exp["samplers"][sampler], nfe, 0, out,
                             max_examples=n, batch_size=n, threads=ctx.threads,
                             device=ctx.device.type)
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            scores = score(out, metrics, out.with_suffix(".json"))
        values = {k: scores["metrics"][k]["value"] for k in metrics}
        ok = (written == n and len(rows) == n and all(r["nfe"] <= nfe for r in rows)
              and scores["n"] == n and all(math.isfinite(v) for v in values.values()))
        parts.append(ok)
        report.add("runs", f"sample {sampler} nfe {nfe} + score", name,
                   f"{written} rows, " + ", ".join(f"{k} {v:.3f}" for k, v in values.items())
                   + f", {time.perf_counter() - start:.1f} s",
                   f"{n} rows, nfe <= {nfe}, finite scores", ok, hard=True)


def two_devices(ctx: argparse.Namespace, data: SmokeData, report: Report) -> None:
    """``python -m repro.train --devices 2`` (Lightning spawns the second rank, as in SLURM)."""
    cfg = smoke_run_cfg(ctx, "ar")
    out = ctx.work / "train_2gpu" / "ar" / "model.ckpt"
    cmd = [sys.executable, "-m", "repro.train", "--data", str(data.layout("ar")), "--out", str(out),
           "--config-json", json.dumps(cfg), "--threads", str(ctx.threads),
           "--accelerator", "gpu", "--devices", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    ok = res.returncode == 0 and out.exists() and "world_size=2" in res.stderr
    report.add("runs", "train devices=2 (python -m repro.train)", "ar",
               f"exit {res.returncode}", "exit 0, world_size=2, model.ckpt", ok, hard=True,
               note="" if ok else res.stderr[-300:].replace("\n", " "))


# ------------------------------------------------------------------------------------------------
# part agrees: CPU vs device, fp32, the same noise
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """TF32 off for matmuls and convolutions (fp32 means fp32 on both devices)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def part_agrees(ctx: argparse.Namespace, report: Report, ckpts: dict[str, Path]) -> None:
    for name in ctx.methods:
        if name not in ckpts:
            report.add("agrees", "CPU vs device", name, "no checkpoint", "part runs trains it",
                       False, hard=True)
            continue
        guarded(report, "agrees", "CPU vs device", name, True,
                lambda n=name: agree(ctx, n, ckpts[n], report))


def agree(ctx: argparse.Namespace, name: str, ckpt: Path, report: Report) -> None:
    cpu, dev = torch.device("cpu"), ctx.device
    method, on_cpu, ck = checkpoint.load_model(ckpt, cpu)
    _, on_dev, _ = checkpoint.load_model(ckpt, dev)
    data_dir = ckpt.parent.parent.parent / "smoke" / "tokenized" / ck["layout"]
    val, test = load_tokenized(data_dir, "validation"), load_tokenized(data_dir, "test")
    rows = np.arange(min(16, len(val)))
    batch = Batch(*val.batch(rows))
    versus = "CPU vs CPU (no GPU: trivially equal)" if dev.type == "cpu" else f"CPU vs {gpu_name(dev)}"

    def loss_on(model: nn.Module, device: torch.device, precision: str = "32-true") -> float:
        with torch.no_grad(), cpu_noise(1234), amp(precision, device):
            return float(method.loss(model, batch.to(device)))

    with full_fp32():
        a, b = loss_on(on_cpu, cpu), loss_on(on_dev, dev)
    rel = abs(a - b) / max(abs(a), 1e-12)
    report.add("agrees", "loss fp32, same weights + noise", name,
               f"{a:.6f} vs {b:.6f} (rel {rel:.1e})", f"rel <= {LOSS_RTOL:g}", rel <= LOSS_RTOL,
               hard=True, note=versus)
    if dev.type == "cuda":
        c = loss_on(on_dev, dev, "bf16-mixed")
        rel16 = abs(c - b) / max(abs(b), 1e-12)
        report.add("agrees", "loss bf16 autocast vs fp32 on device", name,
                   f"{c:.6f} vs {b:.6f} (rel {rel16:.1e})", f"rel <= {BF16_LOSS_RTOL:g}",
                   rel16 <= BF16_LOSS_RTOL, hard=False)
    kind = DETERMINISTIC.get(name, SMOKE[name][1])
    exp = ctx.smoke_cat.experiments[SMOKE[name][0]]
    opts = next((dict(s) for s in exp["samplers"].values() if s["kind"] == kind), {"kind": kind})
    opts = {k: v for k, v in opts.items() if k not in ("kind", "weights")}
    rows = np.arange(min(16, len(test)))
    ids, cond = test.batch(rows)
    pad = int(ck["specials"]["pad"])
    prompt = Batch(torch.where(cond, ids, torch.full_like(ids, pad)), cond)  # as repro.sample
    nfe = max(ctx.nfe)

    def tokens(model: nn.Module, device: torch.device) -> torch.Tensor:
        gen = torch.Generator(device).manual_seed(0)
        with torch.inference_mode(), cpu_noise(4321):
            return method.sample(model, prompt.to(device), nfe, kind, gen, **opts).ids.cpu()

    with full_fp32():
        x, y = tokens(on_cpu, cpu), tokens(on_dev, dev)
    free = ~cond
    share = float((x == y)[free].float().mean())
    judged = name in DETERMINISTIC
    report.add("agrees", f"tokens fp32, {kind} nfe {nfe}, same noise", name,
               f"{share:.4f} equal ({int((x != y)[free].sum())} of {int(free.sum())} differ)",
               f">= {TOKEN_AGREEMENT}" if judged else "shown only",
               share >= TOKEN_AGREEMENT if judged else None, hard=judged,
               note=versus if judged else "draws a categorical token at every step: not judged")


# ------------------------------------------------------------------------------------------------
# part fast: throughput, MFU, sampler overhead, KL-flow memory at the papers' backbones
# ------------------------------------------------------------------------------------------------


def backbone(ctx: argparse.Namespace, name: str, batch_of: str = "train") -> tuple[dict, Shape]:
    """The paper experiment of a method (its samplers as configured, no sweep-derived ones) and
    its network's :class:`Shape` at the training or the evaluation batch."""
    exp_name, dataset = BACKBONES[name]
    exp = ctx.paper_experiments[exp_name]
    vocab, seq_len = dataset_shape(ctx.paper_cat, dataset)
    batch = (exp["train"]["batch_size"] if batch_of == "train"
             else ctx.paper_cat.datasets[dataset]["eval"]["batch_size"])
    return exp, Shape(exp, vocab, seq_len, batch, ctx.tiny)


def part_fast(ctx: argparse.Namespace, report: Report) -> None:
    for name in THROUGHPUT:
        if name in ctx.methods:
            guarded(report, "fast", "training throughput", name, False,
                    lambda n=name: throughput(ctx, n, report))
    for name in ctx.methods:
        exp, _ = backbone(ctx, name)
        for sampler in exp.get("samplers", {}):
            guarded(report, "fast", f"sampler overhead {sampler}", name, False,
                    lambda n=name, s=sampler: sampler_overhead(ctx, n, s, report))
    if "klflow" in ctx.methods:
        guarded(report, "fast", "KL-flow sampling memory", "klflow", False,
                lambda: klflow_memory(ctx, report))


def judged_on_gpu(ctx: argparse.Namespace, ok: bool) -> bool | None:
    """A speed target is judged on a GPU only (tiny CPU models measure fixed costs)."""
    return ok if ctx.device.type == "cuda" else None


def throughput(ctx: argparse.Namespace, name: str, report: Report) -> None:
    exp, shape = backbone(ctx, name)
    steps, skip = ctx.fast_steps, ctx.fast_steps // 3
    train = short_train(exp["train"], steps, ctx.precision, val_batches=0)
    train["accumulate"] = 1
    # Lightning: the train stage itself, on random rows written as a tokenized directory
    data_dir = ctx.work / "fast" / name
    data_dir.mkdir(parents=True, exist_ok=True)
    n_rows = shape.batch * 4
    rows = shape.batch_of(n_rows, torch.device("cpu"))
    np.save(data_dir / "train.ids.npy", rows.ids.numpy().astype(np.int32))
    np.save(data_dir / "train.cond.npy", rows.cond.numpy().astype(np.uint8))
    meta = {"layout": "random", "options": {}, "seq_len": shape.seq_len, "vocab_size": shape.vocab,
            "specials": SPECIALS, "tokenizer_sha256": "0" * 64, "splits": {"train": {"n": n_rows}}}
    (data_dir / "meta.json").write_text(json.dumps(meta))
    cfg = {"method": shape.method, "model": shape.model, "train": train}
    probe = make_probe(ctx.device)
    with quiet():
        training.train(data_dir, data_dir / "out" / "model.ckpt", cfg, threads=ctx.threads,
                       accelerator=ctx.accelerator, devices=1, callbacks=[probe])
    lightning_s = probe.step_seconds(skip)
    free_memory()
    # the plain loop: the same network, optimizer, schedule, clipping and EMAs
    model = shape.build(ctx.device)
    plain_s = statistics.median(plain_steps(shape.method, model, train, shape.batch_of(
        shape.batch, ctx.device), ctx.device, ctx.precision, warmup=skip, timed=steps - skip))
    tokens = shape.batch * shape.seq_len
    flops = linear_flops_per_token(model, int(shape.model["n_layers"]), shape.model["d_model"],
                                   shape.seq_len)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    peak = peak_flops(ctx.device, ctx.peak_tflops)
    mfu = {k: tokens / s * flops / peak for k, s in (("lightning", lightning_s), ("plain", plain_s))
           } if peak else None
    overhead = lightning_s / plain_s - 1.0
    what = (f"{n_params / 1e6:.2f}M params, V {shape.vocab}, L {shape.seq_len}, batch {shape.batch}, "
            f"{ctx.precision}")
    report.add("fast", "train tokens/s Lightning | plain", name,
               f"{tokens / lightning_s:,.0f} | {tokens / plain_s:,.0f}", "measured", None,
               hard=False, note=what)
    report.add("fast", "MFU Lightning | plain", name,
               "n/a" if mfu is None else f"{mfu['lightning']:.1%} | {mfu['plain']:.1%}",
               "measured", None, hard=False,
               note="no bf16 peak known for this device (--peak-tflops)" if mfu is None
               else f"{flops / 1e6:.0f} MFLOP/token, peak {peak / 1e12:.0f} TFLOP/s")
    report.add("fast", "Lightning overhead per step", name,
               f"{overhead:+.1%} ({lightning_s * 1e3:.1f} vs {plain_s * 1e3:.1f} ms)",
               f"<= {LIGHTNING_OVERHEAD:.0%} (GPU)", judged_on_gpu(ctx, overhead <= LIGHTNING_OVERHEAD),
               hard=False)
    report.data.setdefault("throughput", {})[name] = {
        "lightning_step_s": lightning_s, "plain_step_s": plain_s, "tokens_per_step": tokens,
        "flops_per_token": flops, "mfu": mfu, "parameters": n_params, "batch": shape.batch,
        "seq_len": shape.seq_len, "vocab": shape.vocab}


def sampler_overhead(ctx: argparse.Namespace, name: str, sampler: str, report: Report) -> None:
    exp, shape = backbone(ctx, name, batch_of="eval")
    spec = dict(exp["samplers"][sampler])
    kind = spec.pop("kind")
    spec.pop("weights", None)
    k = ctx.overhead_nfe
    extra = {"diffusion_steps": k} if kind == "ddpm" else {}  # DDPM makes exactly T calls
    model = shape.build(ctx.device, **extra).eval()
    with torch.no_grad():  # zero-initialised output layers would make every call trivial
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    method = methods.get_method(shape.method)
    dev = ctx.device
    if shape.method in ("diffuseq", "embedding_fm"):  # halves: the source given
        prompt = half_batch(shape.batch, shape.seq_len, shape.seq_len // 2, shape.vocab, dev,
                            fill=SPECIALS["pad"])
    else:  # the lm layout: only [BOS] given
        prompt = lm_prompt(shape.batch, shape.seq_len, dev)

    def run() -> None:
        method.sample(model, prompt, k, kind, torch.Generator(dev).manual_seed(0), **spec)

    captured: list = []
    handle = model.register_forward_pre_hook(
        lambda mod, args, kwargs: captured.append((args, kwargs)) if not captured else None,
        with_kwargs=True)
    with torch.inference_mode(), autocast(dev):
        try:
            run()
        finally:
            handle.remove()
        if shape.method == "ar":  # cached decoding: a bare call is one full forward
            full = shape.batch_of(shape.batch, dev).ids
            one_call = lambda: model(full)  # noqa: E731
        else:
            args, kwargs = captured[0]
            one_call = lambda: model(*args, **kwargs)  # noqa: E731
        rounds = overhead_rounds(one_call, {sampler: run}, model, dev, ctx.repeat)
    row = overhead_summary(rounds[sampler], k)
    judged = row["in_run"] if shape.method == "ar" else row["overhead"]
    report.add("fast", f"sampler overhead {sampler} nfe {k}", name,
               f"{row['overhead']:.3f} (in_run {row['in_run']:.3f}; {row['sample_s'] * 1e3:.1f} ms, "
               f"call {row['call_s'] * 1e3:.2f} ms)",
               f"{'in_run' if shape.method == 'ar' else 'overhead'} <= {SAMPLER_OVERHEAD} (GPU)",
               judged_on_gpu(ctx, judged <= SAMPLER_OVERHEAD), hard=False,
               note=f"batch {shape.batch}, L {shape.seq_len}, V {shape.vocab}")
    report.data.setdefault("sampler_overhead", {}).setdefault(name, {})[sampler] = dict(row, nfe=k)


def klflow_memory(ctx: argparse.Namespace, report: Report) -> None:
    exp = ctx.paper_experiments[BACKBONES["klflow"][0]]
    vocab, seq_len = dataset_shape(ctx.paper_cat, MEMORY_DATASET)
    batch = ctx.paper_cat.datasets[MEMORY_DATASET]["eval"]["batch_size"]
    ana = analytic_memory(vocab, seq_len, torch.device("cuda"), None)
    state = batch * (ana["state_ode_bytes"] + ana["logits_bytes"] + ana["block_bytes"])
    where = f"V {vocab}, L {seq_len}, batch {batch}"
    result = {"analytic_bytes": state, "batch": batch, "seq_len": seq_len, "vocab": vocab}
    if ctx.device.type != "cuda":
        report.add("fast", "KL-flow V-wide state (analytic)", "klflow", f"{state / 1e9:.1f} GB",
                   f"< {MEMORY_LIMIT / 1e9:.0f} GB", state < MEMORY_LIMIT, hard=False,
                   note=f"{where}; x + l + bf16 logits + blocks; measured on a GPU only")
        report.data["klflow_memory"] = result
        return
    shape = Shape(exp, vocab, seq_len, batch, tiny=False)
    model = shape.build(ctx.device).eval()
    prompt = lm_prompt(batch, seq_len, ctx.device)
    method = methods.get_method("klflow")
    for sampler in ("basic", "hybrid"):
        spec = {k: v for k, v in exp["samplers"].get(sampler, {"kind": sampler}).items()
                if k != "kind"}
        free_memory()
        torch.cuda.reset_peak_memory_stats(ctx.device)
        with torch.inference_mode(), autocast(ctx.device):
            method.sample(model, prompt, 2, sampler, torch.Generator(ctx.device).manual_seed(0),
                          **spec)
        sync(ctx.device)
        peak = torch.cuda.max_memory_allocated(ctx.device)
        result[f"peak_bytes_{sampler}"] = peak
        report.add("fast", f"KL-flow sampling peak memory ({sampler})", "klflow",
                   f"{peak / 1e9:.1f} GB (analytic state {state / 1e9:.1f} GB)",
                   f"< {MEMORY_LIMIT / 1e9:.0f} GB", peak < MEMORY_LIMIT, hard=False,
                   note=f"{where}; weights included")
    report.data["klflow_memory"] = result


# ------------------------------------------------------------------------------------------------
# part fits: one step of every training job of the paper config
# ------------------------------------------------------------------------------------------------


def train_jobs(cat: Catalogue) -> list[tuple[str, str]]:
    """(dataset, experiment) of every train_model job the DAG runs for the tables and figures,
    the FM experiments' embedding sources included."""
    jobs: set[tuple[str, str]] = set()
    cells = [c for t in cat.tables for _, c in cat.table_cells(t)]
    cells += [c for f in cat.figures if not cat.is_analysis("figures", f)
              for _, c in cat.figure_cells(f)]
    for c in cells:  # every method is implemented: an unknown one is a config error
        jobs.add((cat.source(c.dataset), c.experiment))
    for dataset, experiment in list(jobs):
        src = cat.embedding_source(experiment)
        if src is not None:
            jobs.add((dataset, src))
    return sorted(jobs)


def job_signature(shape: Shape, train: dict, precision: str) -> str:
    """What decides the cost of a step: jobs with the same signature are timed once."""
    model = {k: v for k, v in shape.model.items() if k not in NEUTRAL_KEYS}
    keys = ("batch_size", "accumulate", "ema")
    return json.dumps([shape.method, model, shape.vocab, shape.seq_len, precision,
                       {k: train.get(k) for k in keys}], sort_keys=True)


def part_fits(ctx: argparse.Namespace, report: Report) -> None:
    cat = ctx.paper_cat
    measured: dict[str, dict] = {}
    rows = []
    for dataset, experiment in train_jobs(cat):
        exp = cat.experiments[experiment]
        try:
            vocab, seq_len = dataset_shape(cat, dataset)
        except ValueError as err:
            report.error("fits", "one step", f"{experiment} @ {dataset}", err, hard=False)
            continue
        train = dict(exp["train"])
        precision = ("32-true" if ctx.device.type == "cpu"
                     else config.resolve_precision(train.get("precision", "auto"), "gpu"))
        shape = Shape(exp, vocab, seq_len, train.get("batch_size", 32), ctx.tiny)
        if ctx.tiny:  # a CPU run proves the code: at most two micro-batches
            train["accumulate"] = min(train.get("accumulate", 1), 2)
        train = short_train(train, 10, precision, val_batches=0)
        train["batch_size"] = shape.batch
        key = job_signature(shape, train, precision)
        first = key not in measured
        if first:
            measured[key] = guarded(report, "fits", "one step", f"{experiment} @ {dataset}", False,
                                    lambda s=shape, t=train, p=precision: one_step(ctx, s, t, p))
        m = measured[key]
        if m is None:  # an error, not an OOM: the first job of this shape has its FAIL row
            if not first:
                report.add("fits", "one step", f"{experiment} @ {dataset}", "error", "no OOM",
                           False, hard=False, note="the same step failed for an earlier job")
            continue
        steps = int(exp["train"]["steps"])
        hours = None if m["seconds_per_step"] is None else m["seconds_per_step"] * steps / 3600
        row = dict(experiment=experiment, dataset=dataset, seq_len=shape.seq_len,
                   batch_size=shape.batch, accumulate=train.get("accumulate", 1),
                   precision=precision, steps=steps, gpu_hours=hours, **m)
        rows.append(row)
        value = (f"OOM ({m['error']})" if not m["fits"] else
                 f"{m['seconds_per_step']:.3f} s/step x {steps:,} = {hours:,.1f} h"
                 + ("" if m["peak_memory_gb"] is None else f", peak {m['peak_memory_gb']:.1f} GB"))
        report.add("fits", "one step at the per-GPU batch", f"{experiment} @ {dataset}", value,
                   "no OOM", m["fits"], hard=False,
                   note=f"batch {shape.batch} x {row['accumulate']} x L {shape.seq_len}, {precision}")
    per: dict[str, dict[str, float | None]] = {}
    for r in rows:
        per.setdefault(r["experiment"], {})[r["dataset"]] = r["seconds_per_step"]
    report.data["cost_calibration"] = {
        "gpu": gpu_name(ctx.device),
        "valid": not ctx.tiny,
        "note": "seconds of one optimizer step (all accumulate micro-batches) on one device at "
        "the configured per-GPU batch; gpu_hours = seconds_per_step x train.steps / 3600"
        + ("" if not ctx.tiny else "; CPU run at tiny sizes: NOT a calibration"),
        "seconds_per_step": per,
        "jobs": rows,
    }


def one_step(ctx: argparse.Namespace, shape: Shape, train: dict, precision: str) -> dict:
    """One optimizer step (after a warm-up one on a GPU): its seconds and peak memory, or OOM."""
    dev = ctx.device
    out: dict[str, Any] = {"fits": False, "seconds_per_step": None, "peak_memory_gb": None,
                           "error": None}
    if dev.type == "cuda":
        free_memory()
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        model = shape.build(dev)
        batch = shape.batch_of(shape.batch, dev)
        warm, timed = (1, 1) if dev.type == "cuda" else (0, 1)
        secs = plain_steps(shape.method, model, train, batch, dev, precision, warm, timed)
        out.update(fits=True, seconds_per_step=statistics.median(secs))
    except RuntimeError as err:  # torch.cuda.OutOfMemoryError, or a library's "out of memory"
        if not isinstance(err, torch.cuda.OutOfMemoryError) and "out of memory" not in str(err):
            raise
        out["error"] = str(err).split("\n")[0][:120]
    finally:
        model = batch = None
        free_memory()
    if dev.type == "cuda":
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
    return out


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cuda (default; an error without CUDA, never a silent CPU run) or cpu "
                   "(tiny sizes, the same code)")
    p.add_argument("--steps", type=int, default=50, help="training steps of part runs (>= 2)")
    p.add_argument("--nfe", default="4,20",
                   help="the two NFEs of part runs (DiffuSeq's DDIM needs divisors of T = 200)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated: " + ", ".join(METHODS))
    p.add_argument("--parts", default="runs,agrees,fast,fits", help="comma-separated subset")
    p.add_argument("--config", default=str(ROOT / "config" / "config.yaml"), help="paper config")
    p.add_argument("--smoke", default=str(ROOT / "config" / "smoke.yaml"), help="smoke config")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense bf16 peak of the device for MFU (default: by device name)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: the idle cores)")
    p.add_argument("--out-dir", default=str(ROOT / "results" / "gpu_check"))
    p.add_argument("--keep-work", action="store_true", help="keep the trained smoke models")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    args.nfe = [int(k) for k in args.nfe.split(",")]
    for what, got, allowed in (("--methods", args.methods, METHODS),
                               ("--parts", args.parts, ("runs", "agrees", "fast", "fits"))):
        if not got or set(got) - set(allowed):
            p.error(f"{what}: {sorted(set(got) - set(allowed)) or 'none'} given; choose from "
                    f"{', '.join(allowed)}")
    if "agrees" in args.parts and "runs" not in args.parts:
        p.error("--parts agrees compares the models that part runs trains: add runs")
    if "embedding_fm" in args.methods and "runs" in args.parts and (
            "diffuseq" not in args.methods
            or args.methods.index("diffuseq") > args.methods.index("embedding_fm")):
        p.error("--methods: embedding_fm trains on diffuseq's exported embeddings; list diffuseq "
                "before it")
    if args.steps < 2 or len(args.nfe) != 2 or min(args.nfe) < 2:
        p.error("--steps must be >= 2 and --nfe two NFEs >= 2 (e.g. 4,16)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False; "
                f"torch {torch.__version__}, built for CUDA {torch.version.cuda}). Install a CUDA "
                "build of torch or run the CPU variant with --device cpu; this check never falls "
                "back to the CPU by itself")
    return args


def context(args: argparse.Namespace) -> argparse.Namespace:
    ctx = argparse.Namespace(**vars(args))
    ctx.device = torch.device(args.device)
    ctx.tiny = ctx.device.type == "cpu"
    ctx.accelerator = "gpu" if ctx.device.type == "cuda" else "cpu"
    ctx.precision = "bf16-mixed" if ctx.device.type == "cuda" else "32-true"
    ctx.threads = auto_threads(args.threads)
    ctx.fast_steps = 30 if ctx.device.type == "cuda" else 6
    # 40: ddim_gap at T = 2000 and DFM x3 (3·13 steps + read-out) make exactly 40 calls; 32 is neither
    ctx.overhead_nfe = 40 if ctx.device.type == "cuda" else 4
    ctx.repeat = 3 if ctx.device.type == "cuda" else 1
    ctx.smoke_cfg = load_config(Path(args.smoke))
    ctx.smoke_cat = Catalogue(ctx.smoke_cfg)
    paper = load_config(Path(args.config))
    ctx.paper_experiments = resolve_experiments(paper["experiments"])
    ctx.paper_cat = Catalogue(paper)
    return ctx


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    ctx = context(args)
    torch.set_num_threads(ctx.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("repro", "lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx.work = Path(tempfile.mkdtemp(prefix="work_", dir=out_dir))
    report = Report()
    started = time.perf_counter()
    header = f"{machine_line()}  device {gpu_name(ctx.device)}"
    print(f"gpu_check: {header}; work dir {ctx.work}", file=sys.stderr, flush=True)
    seconds: dict[str, float] = {}
    ckpts: dict[str, Path] = {}
    try:
        for part in ("runs", "agrees", "fast", "fits"):
            if part not in ctx.parts:
                continue
            t0 = time.perf_counter()
            if part == "runs":
                ckpts = part_runs(ctx, report)
            elif part == "agrees":
                part_agrees(ctx, report, ckpts)
            elif part == "fast":
                part_fast(ctx, report)
            else:
                part_fits(ctx, report)
            seconds[part] = round(time.perf_counter() - t0, 1)
    finally:
        if not args.keep_work:
            shutil.rmtree(ctx.work, ignore_errors=True)
    total = time.perf_counter() - started
    if ctx.device.type == "cuda":
        report.add("all", "wall time of the check", gpu_name(ctx.device), f"{total:.0f} s",
                   f"<= {BUDGET_S} s (one H100)", total <= BUDGET_S, hard=False)
    hard = report.hard_failures
    verdict = (f"hard checks: {'FAIL (' + str(len(hard)) + ')' if hard else 'all pass'}; "
               f"total {total:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")
    command = "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = report.table()
    print(f"{header}\n{table}\n(* = hard check)  {verdict}")
    results = {"command": command, "machine": header, "device": gpu_name(ctx.device),
               "seconds": seconds, "total_s": total, "hard_failures": len(hard),
               "thresholds": {"loss_rtol": LOSS_RTOL, "bf16_loss_rtol": BF16_LOSS_RTOL,
                              "token_agreement": TOKEN_AGREEMENT,
                              "lightning_overhead": LIGHTNING_OVERHEAD,
                              "sampler_overhead": SAMPLER_OVERHEAD, "memory_bytes": MEMORY_LIMIT,
                              "budget_s": BUDGET_S},
               "rows": report.rows, **report.data}
    (out_dir / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / "gpu_check.md").write_text(
        f"# GPU check\n\n`{command}`\n\n{header}\n\n{report.table(markdown=True)}\n\n"
        f"(* = hard check) {verdict}\n")
    return 1 if hard else 0


if __name__ == "__main__":
    sys.exit(main())
