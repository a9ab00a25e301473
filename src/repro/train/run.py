"""One training run, start to finish: :func:`train` (the API of ``python -m repro.train``).

The steps, in order: check the inputs (config, tokenized arrays, GPUs, loggers, time budget)
before importing Lightning; prepare ``_work/`` (resumable state of a different configuration is
discarded, :func:`run_identity`); build the model and the Lightning trainer
(:mod:`repro.train.module`); fit, resuming ``_work/last.ckpt`` when it exists; validate the final
weights; write ``model.ckpt`` (:func:`repro.train.checkpoint.final_checkpoint`) once every step is
done.

Exact resumption rests on three choices. Batches are indexed by the global micro-batch counter
``m`` (from the restored ``global_step``, :mod:`repro.train.data`); the global torch RNG is
reseeded from ``(seed, m, rank)`` before every training step, so the method's noise does not
depend on RNG state that Lightning does not checkpoint; and a time-limited run stops only on an
optimizer-step boundary (:class:`repro.train.module.TimeBudget`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro import methods, progress
from repro.io import InputError, atomic_write_json, read_json
from repro.methods.base import Method
from repro.models import count_parameters
from repro.tokenization.arrays import TokenizedSplit, load_tokenized, read_meta

from .checkpoint import atomic_checkpoint_io, final_checkpoint, save_torch
from .config import (
    EXPONENTIAL_KEYS,
    NON_TRAJECTORY_KEYS,
    RunConfig,
    TrainConfig,
    on_cuda,
    resolve_precision,
    time_budget_seconds,
)
from .signals import StopSignals
from .world import check_visible_gpus, cluster_plugins

log = logging.getLogger("repro.train")

#: tokenizer specials copied into the model cfg as ``<name>_id`` (methods read them from there)
MODEL_SPECIALS = ("pad", "bos", "eos", "sep", "mask")


def inject_specials(model_cfg: dict, specials: dict, where: str) -> dict:
    """Copy the tokenizer's special ids into the model cfg as ``pad_id`` … ``mask_id``."""
    out = dict(model_cfg)
    if "pad" not in specials:
        raise InputError(f"{where}: specials has no 'pad' id; rerun train_tokenizer and tokenize")
    for name in MODEL_SPECIALS:
        if name not in specials:
            continue
        key = f"{name}_id"
        if key in out and out[key] != specials[name]:
            raise InputError(
                f"model.{key}={out[key]} contradicts the tokenizer "
                f"({where}: {name}={specials[name]}); "
                f"remove model.{key} from the config (it is filled in from meta.json)"
            )
        out[key] = int(specials[name])
    return out


def run_identity(run: RunConfig, model_cfg: dict, meta: dict, world: int) -> dict:
    """What makes two runs the same trajectory: resumable state is kept only for an equal one."""
    tc = run.train
    default_eval = max(tc.ema_decays) if tc.ema_decays else None
    added = {"warmup_init_lr": 0.0, "ema_eval": default_eval, **EXPONENTIAL_KEYS}
    # keys added after the first runs are left out at their defaults: the identity (and so the
    # resume state under _work/) of a run that does not use them is what it was before they existed
    train = {
        k: v
        for k, v in tc.to_dict().items()
        if k not in NON_TRAJECTORY_KEYS and not (k in added and v == added[k])
    }
    return {
        "method": run.method,
        "model": model_cfg,
        "train": train,
        "world_size": world,
        "data": {k: meta.get(k) for k in ("layout", "seq_len", "vocab_size", "tokenizer_sha256")}
        | {"n_train": meta.get("splits", {}).get("train", {}).get("n")},
    }


def _prepare_work_dir(work: Path, identity: dict) -> str:
    """Make ``work``; discard resumable state written for a different configuration."""
    work.mkdir(parents=True, exist_ok=True)
    text = json.dumps(identity, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    stamp = work / "config.json"
    if stamp.exists():
        try:
            old = read_json(stamp)
        except InputError:
            old = None
        if old != identity:
            stale = sorted(work.glob("*.ckpt")) + sorted(work.glob("*.ckpt.partial"))
            log.warning(
                "config changed since %s was written: discarding %d resumable checkpoint(s)",
                stamp,
                len(stale),
            )
            for p in stale:
                p.unlink()
    atomic_write_json(stamp, identity)
    return digest


@dataclass
class _Inputs:
    """What a run reads before any work: its config, method and tokenized data."""

    run: RunConfig
    method: Method
    meta: dict
    train: TokenizedSplit
    val: TokenizedSplit | None
    model_cfg: dict


def _read_inputs(cfg: dict, data_dir: Path) -> _Inputs:
    run = RunConfig.from_dict(cfg)
    try:
        method = methods.get_method(run.method)
    except KeyError as err:
        raise InputError(f"--config-json.method: {err.args[0]}") from None
    meta = read_meta(data_dir)
    train_arrays = load_tokenized(data_dir, "train", meta)
    val_arrays = load_tokenized(data_dir, "validation", meta) if run.train.val_batches > 0 else None
    model_cfg = inject_specials(run.model, meta["specials"], str(data_dir / "meta.json"))
    return _Inputs(run, method, meta, train_arrays, val_arrays, model_cfg)


def _budget_seconds(max_minutes: float | None, stop_margin_s: float | None) -> float:
    """Seconds of training allowed (inf without ``max_minutes``); a bad margin fails here."""
    if max_minutes is None:
        return math.inf
    if stop_margin_s is None:
        return time_budget_seconds(max_minutes)
    return time_budget_seconds(max_minutes, stop_margin_s)


def train(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: dict,
    threads: int = 1,
    max_minutes: float | None = None,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    *,
    stop_margin_s: float | None = None,
    callbacks: Sequence[Any] = (),
    loggers: Sequence[str] = (),
    progress_every_s: float | None = None,
    progress_bar: bool | None = None,
) -> dict:
    """Train (or resume) one model and write ``out`` (``model.ckpt``) when ``steps`` are done.

    Resumable state lives in ``out.parent / "_work"``; an existing ``_work/last.ckpt`` is always
    resumed. ``max_minutes`` is the job's time limit: training stops on the first optimizer-step
    boundary past :func:`~repro.train.config.time_budget_seconds` (``stop_margin_s`` before the limit, or the default
    margin), saves ``_work/last.ckpt`` and returns ``completed: False``; so does SIGTERM or
    SIGUSR1 (:class:`~repro.train.signals.StopSignals`) on the next optimizer-step boundary. At train start the world
    (``devices`` x ``num_nodes`` ranks) is checked and logged (:func:`~repro.train.world.check_world`).
    ``callbacks`` are extra Lightning callbacks (tests, benchmarks). Progress lines every
    ``progress_every_s`` seconds, a bar (``progress_bar``, default: stderr is a terminal) and
    ``loggers`` beside the CSV one (``tensorboard``, ``wandb``): :mod:`repro.progress`.

    Returns:
        A summary dict: ``completed`` (False when the time budget or a :data:`~repro.train.signals.STOP_SIGNALS`
        signal stopped it early; ``stopped_by`` says which),
        ``resumed_from`` (the step this run started at), ``steps``, ``target_steps``,
        ``train_loss``, ``val_loss``, ``seconds``, ``tokens_per_second``, ``world_size``,
        ``parameters``.
    """
    started = time.monotonic()
    data_dir, out = Path(data_dir), Path(out)
    inputs = _read_inputs(cfg, data_dir)
    check_visible_gpus(accelerator, devices)
    progress.check_loggers(loggers, "loggers")
    budget_s = _budget_seconds(max_minutes, stop_margin_s)

    from . import module as lm  # Lightning, after the cheap checks: bad input fails without it

    progress.quiet_lightning()  # no "Tip:" lines or deprecation warnings in the job's log
    # ``threads`` are the job's CPUs on this node, shared by its ranks there
    torch.set_num_threads(max(int(threads) // max(devices, 1), 1))
    work = out.parent / "_work"
    identity = run_identity(inputs.run, inputs.model_cfg, inputs.meta, devices * num_nodes)
    digest = _prepare_work_dir(work, identity)
    fit = _Fit.build(
        lm, inputs, digest, work, out, accelerator, devices, num_nodes, started, budget_s,
        callbacks, loggers, progress_every_s, progress_bar,
    )
    step, completed, fit_seconds = fit.run()
    summary = fit.summary(step, completed, fit_seconds, started)
    if completed and fit.trainer.is_global_zero:
        ckpt = final_checkpoint(fit.module, inputs.run, inputs.model_cfg, inputs.meta, step)
        save_torch(ckpt, out)  # byte-reproducible
    _log_summary(summary)
    return summary


@dataclass
class _Fit:
    """The Lightning objects of one run and what it needs to fit, resume and sum up."""

    trainer: Any
    module: Any
    datamodule: Any
    stop: StopSignals
    last: Path
    tc: TrainConfig
    seq_len: int
    n_params: int

    @classmethod
    def build(
        cls, lm: Any, inputs: _Inputs, digest: str, work: Path, out: Path, accelerator: str,
        devices: int, num_nodes: int, started: float, budget_s: float, callbacks: Sequence[Any],
        loggers: Sequence[str], progress_every_s: float | None, progress_bar: bool | None,
    ) -> _Fit:
        """Seed, build the model and module, and the Trainer with its callbacks and plugins."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        pl, tc, meta = lm.pl, inputs.run.train, inputs.meta
        pl.seed_everything(tc.seed, workers=True, verbose=False)
        model = inputs.method.build_model(
            dict(inputs.model_cfg), vocab_size=int(meta["vocab_size"]), seq_len=int(meta["seq_len"])
        )
        n_params = count_parameters(model)
        precision = resolve_precision(tc.precision, accelerator)
        module = lm.TrainModule(inputs.method, model, tc, digest)
        module.geometry = (devices, num_nodes, len(inputs.train))
        dm = lm.TokenDataModule(inputs.train, inputs.val, tc, pin_memory=on_cuda(accelerator))
        last = work / "last.ckpt"
        checkpointer = ModelCheckpoint(
            dirpath=work,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=tc.ckpt_every,
            enable_version_counter=False,
        )
        stop = StopSignals()
        budget = lm.TimeBudget(budget_s, started, last, tc.ckpt_every, stop)
        tokens_per_step = tc.batch_size * tc.accumulate * devices * num_nodes * int(meta["seq_len"])
        progress_log = progress.progress_callback(
            pl, progress.every_seconds(progress_every_s), tokens_per_step, log
        )
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            plugins=[*cluster_plugins(devices, num_nodes), atomic_checkpoint_io()],
            precision=precision,
            max_steps=tc.steps,
            max_epochs=-1,
            default_root_dir=work,
            logger=progress.lightning_loggers(work, loggers, out.parent.name),
            callbacks=[budget, checkpointer, progress_log, *callbacks],
            accumulate_grad_batches=tc.accumulate,
            gradient_clip_val=tc.grad_clip if tc.grad_clip > 0 else None,
            gradient_clip_algorithm="norm",
            val_check_interval=tc.val_every * tc.accumulate,
            check_val_every_n_epoch=None,
            limit_val_batches=None if tc.val_batches > 0 else 0,
            num_sanity_val_steps=0,
            log_every_n_steps=max(1, min(50, tc.steps // 10)),
            enable_progress_bar=progress.want_bar(progress_bar),
            enable_model_summary=False,
            use_distributed_sampler=False,
        )
        return cls(trainer, module, dm, stop, last, tc, int(meta["seq_len"]), n_params)

    def run(self) -> tuple[int, bool, float]:
        """Fit (resuming ``last.ckpt`` if any) under the stop signals; validate the final weights
        when the last validation was not at the last step. Returns (step, completed, fit seconds)."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        trainer, module, dm, stop, tc = self.trainer, self.module, self.datamodule, self.stop, self.tc
        resume = self.last if self.last.exists() else None
        if resume:
            log.info("resuming from %s", resume)
        with warnings.catch_warnings(), stop:  # SIGTERM / SIGUSR1: save last.ckpt, stop (exit 75)
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            fit_start = time.monotonic()
            try:
                trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
            except SIGTERMException:  # seen by Lightning's handler before TimeBudget took over: the
                stop.reclaim(already=True)  # run stopped before its first step; last.ckpt is current
            fit_seconds = time.monotonic() - fit_start
            step = trainer.global_step
            completed = step >= tc.steps
            if completed and tc.val_batches > 0 and module.val_step != step:
                trainer.validate(module, datamodule=dm, verbose=False)
        return step, completed, fit_seconds

    def summary(self, step: int, completed: bool, fit_seconds: float, started: float) -> dict:
        """The summary dict :func:`train` returns."""
        tc, module = self.tc, self.module
        world = self.trainer.world_size
        first = step if module.start_step is None else module.start_step  # None: nothing left
        done_steps = step - first
        tokens = done_steps * tc.batch_size * tc.accumulate * world * self.seq_len
        loss = module.last_train_loss
        return {
            "completed": completed,
            "resumed_from": first,
            "steps": step,
            "target_steps": tc.steps,
            "train_loss": None if loss is None else float(loss),
            "val_loss": module.val_loss,
            "seconds": round(time.monotonic() - started, 3),
            "tokens_per_second": round(tokens / fit_seconds, 1) if fit_seconds > 0 else 0.0,
            "world_size": world,
            "parameters": self.n_params,
            "stopped_by": None if completed else (self.stop.name or "time budget"),
        }


def _log_summary(summary: dict) -> None:
    log.info(
        "summary: steps=%d/%d (from %d) train_loss=%s val_loss=%s seconds=%.1f tokens/s=%.0f%s",
        summary["steps"],
        summary["target_steps"],
        summary["resumed_from"],
        _fmt(summary["train_loss"]),
        _fmt(summary["val_loss"]),
        summary["seconds"],
        summary["tokens_per_second"],
        "" if summary["completed"] else " (incomplete)",
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
