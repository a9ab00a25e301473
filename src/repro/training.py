"""Training machinery behind ``python -m repro.train``: config, data, LightningModule, EMA, plugins.

The stage entry point (:mod:`repro.train`) stays a thin CLI; everything it runs lives here so it can
be unit-tested:

* :class:`TrainConfig` — the validated ``train`` sub-config (unknown keys are rejected by name).
* :func:`open_split` — memory-mapped ``{split}.ids.npy`` / ``{split}.cond.npy`` arrays (or the
  shards of a sharded split, read as one array).
* :func:`batch_rows` — the rows of micro-batch ``m``: a pure function of ``(seed, m)``, so a resumed
  run reads exactly the batches an uninterrupted one would (no sampler state to save).
* :class:`EMA` — exponential moving average of the trainable weights, kept in Lightning checkpoints
  (one per decay when ``train.ema`` lists several).
* :class:`TrainModule` / :class:`TokenDataModule` — the Lightning glue around a :class:`Method`.
* :func:`cluster_plugins` — the SLURM/Lightning environment policy of ``docs/pipeline.md`` §3.1.
* :func:`train` / :func:`load_model` — the public API used by the CLI, ``repro.sample`` and tests.

Exact resumption rests on three choices. Batches are indexed by the global micro-batch counter
``m`` (from the restored ``global_step``); the global torch RNG is reseeded from
``(seed, m, rank)`` before every training step, so the method's noise does not depend on RNG
state that Lightning does not checkpoint; and a time-limited run stops only on an optimizer-step
boundary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from repro import methods, progress
from repro.io import InputError, atomic_path, atomic_write_json, read_json
from repro.methods.base import Batch, Method

if TYPE_CHECKING:
    import lightning.pytorch as pl

log = logging.getLogger("repro.train")

CKPT_FORMAT = "repro.ckpt.v1"
#: tokenizer specials copied into the model cfg as ``<name>_id`` (methods read them from there)
MODEL_SPECIALS = ("pad", "bos", "eos", "sep", "mask")
SCHEDULES = ("cosine", "linear", "constant", "exponential")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
#: train keys that do not change the optimisation trajectory (ignored when matching a resume)
_NON_TRAJECTORY_KEYS = ("num_workers", "val_every", "val_batches", "ckpt_every")


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` sub-config; ``from_dict`` validates types/ranges and fills defaults.

    ``ema`` is one decay (a float; 0 = off) or a list of distinct decays in (0, 1) kept side by
    side (FM-seq2seq: ``[0.999, 0.9999]``); ``ema_eval`` picks the one that validation and the
    checkpoint's main ``state_dict`` use (resolved to the largest decay when absent). The keys
    ``decay_begin``, ``decay_rate`` and ``decay_steps`` belong to ``schedule: exponential`` (see
    :func:`lr_factor`); ``warmup_init_lr`` is the warm-up's starting learning rate.
    """

    steps: int
    seed: int = 0
    batch_size: int = 32  # per device, per micro-batch
    lr: float = 1.0e-3
    min_lr_ratio: float = 0.1  # cosine / linear only
    schedule: str = "cosine"
    warmup_steps: int = 0
    warmup_init_lr: float = 0.0  # > 0: optax-style warm-up from this lr (see lr_factor)
    decay_begin: int = 0  # exponential: constant-lr steps after the warm-up
    decay_rate: float = 1.0  # exponential: lr factor per decay_steps (1 = no decay)
    decay_steps: int = 1  # exponential: steps per factor of decay_rate (required when decaying)
    weight_decay: float = 0.0  # AdamW, applied to weights with >= 2 dims only
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # global norm; 0 = off
    ema: float | tuple[float, ...] = 0.0  # decay (0 = off) or several decays
    ema_eval: float | None = None  # the decay validated and saved as state_dict; None: EMA off
    val_every: int = 0  # optimizer steps; resolved to max(steps // 4, 1)
    val_batches: int = 4  # 0 = no validation
    ckpt_every: int = 0  # optimizer steps; resolved to val_every
    precision: str = "auto"
    num_workers: int = 0
    accumulate: int = 1

    @classmethod
    def from_dict(cls, raw: Any, where: str = "train") -> TrainConfig:
        if not isinstance(raw, dict):
            raise InputError(
                f"{where}: expected a mapping of training options, got {type(raw).__name__}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(
                f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(known)} "
                "(check the spelling)"
            )
        if "steps" not in raw:
            raise InputError(f"{where}.steps is required (number of optimizer steps)")
        vals: dict[str, Any] = {}
        ints = {
            "steps": 1,
            "seed": 0,
            "batch_size": 1,
            "warmup_steps": 0,
            "decay_begin": 0,
            "decay_steps": 1,
            "val_every": 1,
            "val_batches": 0,
            "ckpt_every": 1,
            "num_workers": 0,
            "accumulate": 1,
        }
        for key, lo in ints.items():
            if key in raw:
                vals[key] = _int(raw[key], f"{where}.{key}", lo)
        floats = {
            "lr": (0.0, None, False),
            "min_lr_ratio": (0.0, 1.0, True),
            "warmup_init_lr": (0.0, None, True),
            "decay_rate": (0.0, 1.0, False),
            "weight_decay": (0.0, None, True),
            "eps": (0.0, None, False),
            "grad_clip": (0.0, None, True),
        }
        for key, (lo, hi, lo_ok) in floats.items():
            if key in raw:
                vals[key] = _float(raw[key], f"{where}.{key}", lo, hi, lo_ok)
        if "ema" in raw:
            vals["ema"] = _ema(raw["ema"], f"{where}.ema")
        decays = _ema_decays(vals.get("ema", 0.0))
        eval_decay = raw.get("ema_eval")
        if eval_decay is None:
            vals["ema_eval"] = max(decays) if decays else None
        else:
            eval_decay = _float(eval_decay, f"{where}.ema_eval", 0.0, 1.0, False)
            if eval_decay not in decays:
                have = f"the decays are {list(decays)}" if decays else "EMA is off (ema: 0)"
                raise InputError(
                    f"{where}.ema_eval is {eval_decay} but {have}; set it to one of the "
                    f"{where}.ema decays or remove it (default: the largest decay)"
                )
            vals["ema_eval"] = eval_decay
        if "betas" in raw:
            b = raw["betas"]
            if not (isinstance(b, (list, tuple)) and len(b) == 2):
                raise InputError(f"{where}.betas must be a list of two numbers, e.g. [0.9, 0.95]")
            vals["betas"] = tuple(_float(x, f"{where}.betas", 0.0, 1.0, True) for x in b)
            if max(vals["betas"]) >= 1.0:
                raise InputError(f"{where}.betas must lie in [0, 1), got {list(b)}")
        for key, choices in (("schedule", SCHEDULES), ("precision", PRECISIONS)):
            if key in raw:
                if raw[key] not in choices:
                    raise InputError(
                        f"{where}.{key} is {raw[key]!r}; choose one of {list(choices)}"
                    )
                vals[key] = raw[key]
        _check_schedule(vals, where)
        steps = vals["steps"]
        vals.setdefault("val_every", max(steps // 4, 1))
        vals.setdefault("ckpt_every", vals["val_every"])
        return cls(**vals)

    @property
    def ema_decays(self) -> tuple[float, ...]:
        """The EMA decays kept during training, in config order (empty when EMA is off)."""
        return _ema_decays(self.ema)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        if isinstance(self.ema, tuple):
            d["ema"] = list(self.ema)
        return d


#: ``decay_*`` keys of ``schedule: exponential`` and their defaults (rejected elsewhere when set)
_EXPONENTIAL_KEYS = {"decay_begin": 0, "decay_rate": 1.0, "decay_steps": 1}


def _ema(v: Any, key: str) -> float | tuple[float, ...]:
    """``train.ema``: one decay in [0, 1) (0 = off), or a list of distinct decays in (0, 1)."""
    if isinstance(v, (list, tuple)):
        if not v:
            raise InputError(
                f"{key} is an empty list; list decays such as [0.999, 0.9999] or use 0"
            )
        out = tuple(_float(x, key, 0.0, 1.0, False) for x in v)
        if max(out) >= 1.0:
            raise InputError(f"{key}: every listed decay must lie in (0, 1), got {list(v)}")
        if len(set(out)) != len(out):
            raise InputError(f"{key} lists a decay twice ({list(v)}); list each decay once")
        return out
    out = _float(v, key, 0.0, 1.0, True)
    if out >= 1.0:
        raise InputError(
            f"{key} must be < 1 (a decay such as 0.9999), 0 for off, or a list of decays"
        )
    return out


def _ema_decays(ema: float | tuple[float, ...]) -> tuple[float, ...]:
    if isinstance(ema, tuple):
        return ema
    return (ema,) if ema > 0 else ()


def ema_weights_name(decay: float) -> str:
    """Name of one EMA's weights in ``alt_state_dicts`` / ``weights``: ``ema`` + repr(decay)."""
    return f"ema{float(decay)!r}"


def _check_schedule(vals: dict, where: str) -> None:
    """Cross-key checks of the learning-rate schedule keys."""
    schedule = vals.get("schedule", "cosine")
    if schedule != "exponential":
        extra = sorted(k for k, d in _EXPONENTIAL_KEYS.items() if vals.get(k, d) != d)
        if extra:
            raise InputError(
                f"{where}: {extra} only apply to schedule: exponential (schedule is {schedule!r}); "
                "remove them or set schedule: exponential"
            )
    elif vals.get("decay_rate", 1.0) < 1.0 and "decay_steps" not in vals:
        raise InputError(
            f"{where}.decay_steps is required when decay_rate < 1: the number of optimizer steps "
            "over which the lr shrinks by one factor of decay_rate (FM-seq2seq: 50000)"
        )
    init = vals.get("warmup_init_lr", 0.0)
    if init > 0:
        if vals.get("warmup_steps", 0) == 0:
            raise InputError(
                f"{where}.warmup_init_lr={init} has no effect without warmup_steps; "
                "set warmup_steps > 0 or remove warmup_init_lr"
            )
        lr = vals.get("lr", 1.0e-3)
        if init > lr:
            raise InputError(
                f"{where}.warmup_init_lr={init} exceeds lr={lr}: the warm-up rises from "
                "warmup_init_lr to lr (FM-seq2seq: 1.0e-7 to 3.0e-4)"
            )


def _int(v: Any, key: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{key} must be an integer, got {v!r}")
    if v < lo:
        raise InputError(f"{key} must be >= {lo}, got {v}")
    return v


def _float(v: Any, key: str, lo: float, hi: float | None, lo_ok: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(
            f"{key} must be a number, got {v!r} (YAML reads 3e-4 as a string: write 3.0e-4)"
        )
    v = float(v)
    if v < lo or (v == lo and not lo_ok) or (hi is not None and v > hi) or not math.isfinite(v):
        rng = f"{'[' if lo_ok else '('}{lo}, {hi if hi is not None else 'inf'}]"
        raise InputError(f"{key} must lie in {rng}, got {v}")
    return v


@dataclass(frozen=True)
class RunConfig:
    """``--config-json``: the method, its model cfg and the training options."""

    method: str
    model: dict
    train: TrainConfig

    @classmethod
    def from_dict(cls, raw: Any, where: str = "--config-json") -> RunConfig:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object with keys method, model, train")
        unknown = sorted(set(raw) - {"method", "model", "train"})
        if unknown:
            raise InputError(
                f"{where}: unknown key(s) {unknown}; allowed: ['method', 'model', 'train']"
            )
        method = raw.get("method")
        if not isinstance(method, str) or not method:
            raise InputError(
                f"{where}.method must be a method name, one of {sorted(methods.REGISTRY)}"
            )
        model = raw.get("model", {})
        if not isinstance(model, dict):
            raise InputError(f"{where}.model must be a mapping of model options")
        if "train" not in raw:
            raise InputError(f"{where}.train is required (at least {{'steps': N}})")
        return cls(method, dict(model), TrainConfig.from_dict(raw["train"], f"{where}.train"))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimizer step ``step`` (0-based): linear warm-up, then decay.

    Warm-up (``step < warmup_steps``): with ``warmup_init_lr == 0`` (the default) the lr is
    ``lr * (step + 1) / warmup_steps``, as in every run made before that key existed; with
    ``warmup_init_lr > 0`` it is optax's ``linear_schedule``, ``warmup_init_lr + (lr -
    warmup_init_lr) * step / warmup_steps``, whatever the schedule. After the warm-up:

    * ``cosine`` / ``linear``: from 1 down to ``min_lr_ratio`` at ``steps``;
    * ``constant``: 1;
    * ``exponential`` (FM-seq2seq's optax ``exponential_decay``, ``staircase=False``): 1 for
      ``decay_begin`` steps, then ``decay_rate ** ((step - warmup_steps - decay_begin) /
      decay_steps)`` (never floored; ``min_lr_ratio`` and ``steps`` play no part).
    """
    if step < cfg.warmup_steps:
        if cfg.warmup_init_lr > 0:
            init = cfg.warmup_init_lr
            return (init + (cfg.lr - init) * step / cfg.warmup_steps) / cfg.lr
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "exponential":
        since = step - cfg.warmup_steps - cfg.decay_begin
        return 1.0 if since <= 0 else cfg.decay_rate ** (since / cfg.decay_steps)
    progress = min(max((step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1), 0.0), 1.0)
    lo = cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - (1.0 - lo) * progress


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` means bf16 autocast on CUDA and full fp32 on CPU."""
    if precision != "auto":
        return precision
    on_cuda = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()
    )
    return "bf16-mixed" if on_cuda else "32-true"


def time_budget_seconds(max_minutes: float, margin_s: float | None = None) -> float:
    """Seconds of training allowed in a job of ``max_minutes``: keep a margin for startup and save.

    The margin is ``margin_s`` when given (``resources.train.stop_margin_s``: big models take
    longer to save), otherwise 10% of the job, at least 30 s and at most 10 min (and never more
    than half the job).
    """
    if max_minutes <= 0:
        raise InputError(f"--max-minutes must be positive, got {max_minutes}")
    total = max_minutes * 60.0
    if margin_s is not None:
        if not 0 < margin_s < total:
            raise InputError(
                f"--stop-margin-s {margin_s} must lie between 0 and the job's {total:.0f} s "
                f"(--max-minutes {max_minutes})"
            )
        return total - margin_s
    margin = min(600.0, max(30.0, 0.1 * total))
    return max(total - margin, 0.5 * total)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class TokenArrays:
    """One split of a tokenized layout, memory-mapped."""

    ids: np.ndarray  # (N, L) int32 (a ShardedArray for a sharded split)
    cond: np.ndarray  # (N, L) uint8
    row_ids: Sequence[str] | None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids int64, cond bool) tensors of the given rows."""
        ids = torch.from_numpy(np.asarray(self.ids[rows], dtype=np.int64))
        cond = torch.from_numpy(np.asarray(self.cond[rows]) != 0)
        return ids, cond


def read_meta(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / "meta.json"
    meta = read_json(path)
    for key in ("seq_len", "vocab_size", "specials", "layout"):
        if key not in meta:
            raise InputError(f"{path}: missing key {key!r}; rerun the tokenize stage")
    return meta


def open_split(data_dir: str | os.PathLike, split: str, meta: dict | None = None) -> TokenArrays:
    """Memory-map ``{split}.ids.npy`` and ``{split}.cond.npy``; check shapes against meta.json.

    A sharded split (meta.json ``splits.{split}.shards``) is mapped as one array over its shards.
    """
    data_dir = Path(data_dir)
    meta = read_meta(data_dir) if meta is None else meta
    info = meta.get("splits", {}).get(split, {})
    if isinstance(info, dict) and "shards" in info:
        from repro.tokenization.shards import open_shards

        return TokenArrays(*open_shards(data_dir, split, info, meta["seq_len"]))
    arrays = []
    for kind in ("ids", "cond"):
        path = data_dir / f"{split}.{kind}.npy"
        if not path.exists():
            raise InputError(f"{path}: file not found; run the tokenize stage for split {split!r}")
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(
                f"{path}: expected a 2-D integer array (N, L), got {arr.dtype} {arr.shape}"
            )
        if arr.shape[1] != meta["seq_len"]:
            raise InputError(
                f"{path}: sequence length {arr.shape[1]} != meta.json seq_len {meta['seq_len']}; "
                "the directory mixes two tokenize runs, rerun tokenize"
            )
        arrays.append(arr)
    ids, cond = arrays
    if ids.shape != cond.shape:
        raise InputError(
            f"{data_dir}: {split}.ids.npy {ids.shape} and {split}.cond.npy {cond.shape} differ"
        )
    if ids.shape[0] == 0:
        raise InputError(f"{data_dir}/{split}.ids.npy: the split is empty")
    info = meta.get("splits", {}).get(split, {})
    row_ids = info.get("row_ids")
    if row_ids is not None and len(row_ids) != ids.shape[0]:
        raise InputError(
            f"{data_dir}/meta.json: splits.{split}.row_ids has {len(row_ids)} entries "
            f"but {split}.ids.npy has {ids.shape[0]} rows; rerun tokenize"
        )
    return TokenArrays(ids, cond, row_ids)


def batch_rows(seed: int, m: int, n: int, size: int, _cache: dict | None = None) -> np.ndarray:
    """Row indices of global micro-batch ``m`` (``size`` rows, over all ranks).

    The index stream is the concatenation of per-epoch permutations of ``range(n)``, permutation
    ``e`` drawn from ``numpy.random.default_rng([seed, e])``; micro-batch ``m`` is the slice
    ``[m * size, (m + 1) * size)`` of that stream. A pure function of ``(seed, m)``.
    """
    start = m * size
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        epoch, offset = divmod(start + filled, n)
        perm = None if _cache is None else _cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([seed, epoch]).permutation(n)
            if _cache is not None:
                _cache.clear()
                _cache[epoch] = perm
        take = min(size - filled, n - offset)
        out[filled : filled + take] = perm[offset : offset + take]
        filled += take
    return out


class TrainStream(torch.utils.data.IterableDataset):
    """Endless micro-batches ``(ids, cond, m)`` for one rank, starting at micro-batch ``start``."""

    def __init__(
        self, arrays: TokenArrays, seed: int, batch_size: int, rank: int, world: int, start: int
    ) -> None:
        super().__init__()
        self.arrays, self.seed, self.batch_size = arrays, seed, batch_size
        self.rank, self.world, self.start = rank, world, start

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        info = torch.utils.data.get_worker_info()
        wid, nworkers = (0, 1) if info is None else (info.id, info.num_workers)
        cache: dict = {}
        size = self.batch_size * self.world
        m = self.start + wid  # DataLoader interleaves workers round-robin, so order is preserved
        while True:
            rows = batch_rows(self.seed, m, len(self.arrays), size, cache)
            mine = np.sort(rows[self.rank * self.batch_size : (self.rank + 1) * self.batch_size])
            ids, cond = self.arrays.batch(mine)  # sorted rows: sequential memmap reads
            yield ids, cond, m
            m += nworkers


class ValBatches(torch.utils.data.Dataset):
    """A fixed set of validation batches (the first rows of the split), sharded over ranks."""

    def __init__(
        self, arrays: TokenArrays, batch_size: int, n_batches: int, rank: int, world: int
    ) -> None:
        self.arrays, self.batch_size, self.rank, self.world = arrays, batch_size, rank, world
        per_batch = batch_size * world
        self.n = min(n_batches, max(len(arrays) // per_batch, 1))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        n = len(self.arrays)
        lo = (k * self.world + self.rank) * self.batch_size
        rows = np.arange(lo, lo + self.batch_size) % n  # wraps only for splits smaller than a batch
        ids, cond = self.arrays.batch(rows)
        return ids, cond, k


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (SeedSequence: well spread, stable across versions)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


# --------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------


class EMA:
    """``shadow <- decay * shadow + (1 - decay) * param`` after every optimizer step.

    Initialised from the initial weights; covers trainable parameters only (frozen weights and
    buffers are taken from the model as they are).

    Hand-written on purpose; the library averagers were checked (torch 2.13, Lightning 2.6):
    ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn`` copies the weights at
    its first update (after step 1) instead of starting from the initial weights as FM-seq2seq's
    EMAs do, and deep-copies the whole module (frozen embeddings included) per decay; Lightning's
    ``WeightAveraging`` callback keeps one average and moves it into the checkpoint's
    ``state_dict`` key, so two callbacks (FM-seq2seq keeps 0.999 and 0.9999 side by side) would
    overwrite each other's state and the raw weights on save and resume.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {
            n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        weight = 1.0 - self.decay
        for name, p in model.named_parameters():
            s = self.shadow.get(name)
            if s is None:
                continue
            if s.device != p.device:
                s = self.shadow[name] = s.to(p.device)
            s.lerp_(p.detach(), weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise InputError(
                "EMA state in the resume checkpoint does not match the model's parameters"
            )
        self.shadow = dict(state)

    def averaged_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with every EMA'd parameter replaced by its average."""
        state = model.state_dict()
        for name, s in self.shadow.items():
            state[name] = s.to(state[name].device, state[name].dtype)
        return state

    @torch.no_grad()
    def swap_in(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Load the averaged weights into ``model``; returns the raw weights for :meth:`restore`."""
        params = dict(model.named_parameters())
        backup = {n: params[n].detach().clone() for n in self.shadow}
        for n, s in self.shadow.items():
            params[n].copy_(s)
        return backup

    @torch.no_grad()
    def restore(self, model: nn.Module, backup: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        for n, b in backup.items():
            params[n].copy_(b)


# --------------------------------------------------------------------------------------------
# SLURM / Lightning environment
# --------------------------------------------------------------------------------------------


def cluster_plugins(devices: int, num_nodes: int) -> list:
    """Cluster-environment plugins for the Trainer (``docs/pipeline.md`` §3.1).

    * ``srun`` launched one task per device (``SLURM_NTASKS == devices * num_nodes``, the MPI
      path): Lightning's :class:`SLURMEnvironment`, without signal-based auto-requeue.
    * Several devices inside the jobstep's ``srun -n1``: a :class:`LightningEnvironment`, so
      Lightning spawns the ranks itself (otherwise SLURM detection would silently run one rank
      on a shard of the data).
    * One device: SLURM environment if under SLURM, else Lightning's default detection.
    """
    from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment

    try:
        ntasks = int(os.environ.get("SLURM_NTASKS", "0") or 0)
    except ValueError:
        raise InputError(f"SLURM_NTASKS={os.environ['SLURM_NTASKS']!r} is not an integer") from None
    world = devices * num_nodes
    if ntasks and ntasks == world:
        return [SLURMEnvironment(auto_requeue=False)]
    if ntasks > 1:
        raise InputError(
            f"SLURM_NTASKS={ntasks} but --devices {devices} x --num-nodes {num_nodes} = {world}: "
            "launch one task per device (resources tasks_per_node) or pass matching "
            "--devices/--num-nodes"
        )
    if world > 1:
        if num_nodes > 1:
            raise InputError(
                "multi-node training needs resources mpi='srun' + tasks_per_node so that srun "
                "launches one task per GPU (see docs/pipeline.md §3.3)"
            )
        return [LightningEnvironment()]
    return [SLURMEnvironment(auto_requeue=False)] if ntasks else []


def check_visible_gpus(accelerator: str, devices: int, cuda_count: int | None = None) -> None:
    """Fail clearly when a GPU run is asked for more devices than this process can see."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not on_gpu:
        return
    seen = torch.cuda.device_count() if cuda_count is None else cuda_count
    if seen < devices:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        raise InputError(
            f"--devices {devices} but this process sees {seen} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={visible}): request gpu={devices} with nodes=1 for the job "
            "(experiments.<name>.resources or resources.train) or lower the device count"
        )


def check_world(
    *,
    devices: int,
    num_nodes: int,
    world_size: int,
    global_rank: int,
    local_rank: int,
    node_rank: int,
    n_rows: int,
    batch_size: int,
    env: dict[str, str] | None = None,
) -> str:
    """Check the distributed world against the one asked for; return the line to log.

    Raises :class:`InputError` when ``world_size`` is not ``devices x num_nodes`` — the silent
    trap of a job that runs one rank on a shard of the data (docs/pipeline.md §3.1) — or when SLURM
    started a different number of tasks or nodes than that.
    """
    env = dict(os.environ) if env is None else env
    expected = devices * num_nodes
    if world_size != expected:
        raise InputError(
            f"distributed world mismatch: Lightning runs {world_size} rank(s) but --devices "
            f"{devices} x --num-nodes {num_nodes} = {expected}; each rank would train on "
            f"1/{world_size} of every global batch instead of 1/{expected}. Check the job's "
            "resources (gpu, nodes) and that the rule does not wrap python in its own srun"
        )
    ntasks = env.get("SLURM_NTASKS")
    if ntasks and int(ntasks) not in (1, expected):
        raise InputError(
            f"SLURM started {ntasks} tasks but the run expects {expected} rank(s) "
            f"({devices} per node x {num_nodes} node(s))"
        )
    nnodes = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
    if nnodes and num_nodes > 1 and int(nnodes) != num_nodes:
        raise InputError(f"SLURM allocated {nnodes} node(s) but --num-nodes is {num_nodes}")
    global_batch = batch_size * world_size
    batches = -(-n_rows // global_batch)
    return (
        f"world: world_size={world_size} global_rank={global_rank} local_rank={local_rank} "
        f"node_rank={node_rank} devices={devices} num_nodes={num_nodes} "
        f"slurm_job_id={env.get('SLURM_JOB_ID', '-')} slurm_ntasks={ntasks or '-'} "
        f"train_rows={n_rows} global_batch={global_batch} batches_per_epoch={batches} "
        f"rows_per_rank_per_epoch={batches * batch_size}"
    )


# --------------------------------------------------------------------------------------------
# Lightning glue
# --------------------------------------------------------------------------------------------


def _cpu_copy(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def _lightning() -> Any:
    import lightning.pytorch as pl

    return pl


def build_module_classes() -> tuple[type, type, type]:
    """Define the Lightning classes lazily (importing lightning takes seconds)."""
    pl = _lightning()

    class TokenDataModule(pl.LightningDataModule):
        def __init__(
            self, train: TokenArrays, val: TokenArrays | None, cfg: TrainConfig, pin_memory: bool
        ) -> None:
            super().__init__()
            self.train_arrays, self.val_arrays, self.cfg, self.pin = train, val, cfg, pin_memory

        def train_dataloader(self) -> torch.utils.data.DataLoader:
            # Called after Lightning restored the checkpoint: global_step is the resumed step.
            t = self.trainer
            stream = TrainStream(
                self.train_arrays,
                self.cfg.seed,
                self.cfg.batch_size,
                t.global_rank,
                t.world_size,
                t.global_step * self.cfg.accumulate,
            )
            return torch.utils.data.DataLoader(
                stream,
                batch_size=None,
                num_workers=self.cfg.num_workers,
                pin_memory=self.pin,
                worker_init_fn=ignore_stop_signals if self.cfg.num_workers else None,
            )

        def val_dataloader(self) -> torch.utils.data.DataLoader:
            t = self.trainer
            assert self.val_arrays is not None
            ds = ValBatches(
                self.val_arrays,
                self.cfg.batch_size,
                self.cfg.val_batches,
                t.global_rank,
                t.world_size,
            )
            return torch.utils.data.DataLoader(
                ds, batch_size=None, shuffle=False, pin_memory=self.pin
            )

    class TrainModule(pl.LightningModule):
        def __init__(self, method: Method, model: nn.Module, cfg: TrainConfig, digest: str) -> None:
            super().__init__()
            self.method, self.model, self.cfg, self.digest = method, model, cfg, digest
            # one EMA per decay, all from the initial weights; ``ema`` is the validated/saved one
            self.emas = {d: EMA(model, d) for d in cfg.ema_decays}
            self.ema = self.emas[cfg.ema_eval] if self.emas else None
            self.start_step: int | None = None
            #: (devices, num_nodes, train rows), checked against the world at train start
            self.geometry: tuple[int, int, int] | None = None
            self._raw_weights: dict[str, torch.Tensor] | None = None  # during validation
            self.last_train_loss: torch.Tensor | float | None = None
            self.val_loss: float | None = None
            self.val_step: int | None = None
            self._val_sum: list[torch.Tensor] = []

        # -- training -----------------------------------------------------------------------
        def on_train_start(self) -> None:
            t = self.trainer
            self.start_step = t.global_step
            if self.geometry is not None:
                devices, num_nodes, n_rows = self.geometry
                log.info(
                    "%s",
                    check_world(
                        devices=devices,
                        num_nodes=num_nodes,
                        world_size=t.world_size,
                        global_rank=t.global_rank,
                        local_rank=t.local_rank,
                        node_rank=t.node_rank,
                        n_rows=n_rows,
                        batch_size=self.cfg.batch_size,
                    ),
                )
            n_params = sum(p.numel() for p in self.model.parameters())
            n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            log.info(
                "train start: world_size=%d global_rank=%d parameters=%d (trainable %d) "
                "micro_batch=%d accumulate=%d global_batch=%d step=%d/%d",
                t.world_size,
                t.global_rank,
                n_params,
                n_train,
                self.cfg.batch_size,
                self.cfg.accumulate,
                self.cfg.batch_size * self.cfg.accumulate * t.world_size,
                t.global_step,
                self.cfg.steps,
            )

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            ids, cond, m = batch
            # the method's noise is a function of (seed, micro-batch, rank): exact on resume
            torch.manual_seed(derive_seed(self.cfg.seed, 0, int(m), self.global_rank))
            loss = self.method.loss(self.model, Batch(ids, cond))
            self.last_train_loss = loss.detach()
            self.log("train_loss", loss, on_step=True, batch_size=ids.shape[0])
            self.log(
                "lr", self.lr_schedulers().get_last_lr()[0], on_step=True, batch_size=ids.shape[0]
            )
            return loss

        def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            super().optimizer_step(*args, **kwargs)
            for ema in self.emas.values():
                ema.update(self.model)

        def configure_optimizers(self) -> dict:
            cfg = self.cfg
            params = [p for p in self.model.parameters() if p.requires_grad]
            groups = [
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
            ]
            groups = [g for g in groups if g["params"]]
            fused = bool(params) and all(p.is_cuda for p in params)
            opt = torch.optim.AdamW(
                groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused or None
            )
            # torch's LambdaLR over the closed-form factor (lr_factor): the built-in schedulers
            # would need a SequentialLR of up to three (warm-up from warmup_init_lr, constant,
            # then decay) and ExponentialLR / CosineAnnealingLR update the lr recursively, which
            # drifts from the closed forms of the papers' code (optax's exponential_decay)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        # -- validation (on the weights that will be saved: the ema_eval EMA when on) ---------
        def on_validation_start(self) -> None:
            self._val_sum = []
            if self.ema is not None:
                self._raw_weights = self.ema.swap_in(self.model)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            ids, cond, k = batch
            torch.manual_seed(derive_seed(self.cfg.seed, 1, int(k), self.global_rank))
            loss = self.method.loss(self.model, Batch(ids, cond)).float()
            self._val_sum.append(torch.stack([loss * ids.shape[0], loss.new_tensor(ids.shape[0])]))

        def on_validation_epoch_end(self) -> None:
            total = (
                torch.stack(self._val_sum).sum(0)
                if self._val_sum
                else torch.zeros(2, device=self.device)
            )
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
            if float(total[1]) > 0:
                self.val_loss = float(total[0] / total[1])
                self.val_step = self.trainer.global_step
                # already reduced over ranks; sync_dist only silences Lightning's DDP warning
                self.log("val_loss", self.val_loss, batch_size=1, sync_dist=True)

        def on_validation_end(self) -> None:
            if self.ema is not None and self._raw_weights is not None:
                self.ema.restore(self.model, self._raw_weights)
                self._raw_weights = None

        # -- resumable state ---------------------------------------------------------------
        def on_save_checkpoint(self, checkpoint: dict) -> None:
            loss = self.last_train_loss
            checkpoint["repro"] = {
                "digest": self.digest,
                # a single-float ``ema`` keeps the original layout (one shadow under "ema")
                "ema": self.ema.state_dict() if self._single_ema() else None,
                "emas": {repr(d): e.state_dict() for d, e in self.emas.items()}
                if isinstance(self.cfg.ema, tuple)
                else None,
                "val_loss": self.val_loss,
                "val_step": self.val_step,
                "train_loss": None if loss is None else float(loss),
            }

        def on_load_checkpoint(self, checkpoint: dict) -> None:
            state = checkpoint.get("repro")
            if state is None or state.get("digest") != self.digest:
                raise InputError(
                    "resume checkpoint was written by a different configuration; delete the _work/ "
                    "folder beside the model.ckpt output to start afresh"
                )
            if self._single_ema():
                self.ema.load_state_dict(state["ema"])
            elif self.emas:
                saved = state.get("emas") or {}
                if set(saved) != {repr(d) for d in self.emas}:
                    raise InputError(
                        f"resume checkpoint holds EMAs {sorted(saved)} but train.ema lists "
                        f"{list(self.emas)}; delete the _work/ folder beside the model.ckpt "
                        "output to start afresh"
                    )
                for d, ema in self.emas.items():
                    ema.load_state_dict(saved[repr(d)])
            self.val_loss, self.val_step = state["val_loss"], state["val_step"]
            self.last_train_loss = state["train_loss"]

        def _single_ema(self) -> bool:
            return self.ema is not None and not isinstance(self.cfg.ema, tuple)

        def weights_name(self) -> str:
            """Name of :meth:`final_state_dict`'s weights (the checkpoint's ``weights`` field).

            ``raw`` (EMA off), ``ema`` (``train.ema`` one float) or ``ema<decay>`` of
            ``ema_eval`` (``train.ema`` a list).
            """
            if self.ema is None:
                return "raw"
            return "ema" if self._single_ema() else ema_weights_name(self.cfg.ema_eval)

        def final_state_dict(self) -> dict[str, torch.Tensor]:
            sd = self.ema.averaged_state_dict(self.model) if self.ema else self.model.state_dict()
            return _cpu_copy(sd)

        def alt_state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
            """``raw`` and every EMA's weights (CPU copies), keyed by :func:`ema_weights_name`.

            EMAs only read the weights, never change them, so these are exactly the final
            weights of separate runs with ``ema: 0`` and with each listed decay (FM-seq2seq
            Fig. 6 from one training run).
            """
            out = {"raw": _cpu_copy(self.model.state_dict())}
            for d, ema in self.emas.items():
                out[ema_weights_name(d)] = _cpu_copy(ema.averaged_state_dict(self.model))
            return out

    class TimeBudget(pl.Callback):
        """Stop on the first optimizer-step boundary past the budget, or after a stop signal
        (:class:`StopSignals`), and save ``last.ckpt``."""

        def __init__(
            self,
            seconds: float,
            started: float,
            last_ckpt: Path,
            ckpt_every: int,
            stop: StopSignals | None = None,
        ) -> None:
            self.seconds, self.started = seconds, started
            self.last_ckpt, self.ckpt_every = last_ckpt, ckpt_every
            self.stop = stop
            self.stopped_at: int | None = None
            self._last_step = -1

        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self._last_step = trainer.global_step
            if self.stop is not None:
                # Lightning installed its own SIGTERM handler when fit started (it would end the
                # run mid-accumulation, exit status 0, nothing saved): take the signals back
                self.stop.reclaim(already=trainer.received_sigterm)

        def on_train_batch_end(
            self,
            trainer: pl.Trainer,
            pl_module: pl.LightningModule,
            outputs: Any,
            batch: Any,
            batch_idx: int,
        ) -> None:
            step = trainer.global_step
            if step == self._last_step or step >= trainer.max_steps:
                return  # mid-accumulation (no optimizer step yet) or finished anyway
            self._last_step = step
            out_of_time = time.monotonic() - self.started > self.seconds
            if self.stop is not None and self.stop.received is not None:
                out_of_time = True
            if trainer.world_size > 1:
                out_of_time = trainer.strategy.broadcast(out_of_time)
            if not out_of_time:
                return
            trainer.should_stop = True
            self.stopped_at = step
            if step % self.ckpt_every != 0:  # otherwise ModelCheckpoint saves this step next
                save_trainer_checkpoint(trainer, self.last_ckpt)

    return TokenDataModule, TrainModule, TimeBudget


def save_trainer_checkpoint(trainer: pl.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint``: rank 0 writes it through :func:`atomic_checkpoint_io` (never a
    torn file; the previous one stays until the new one is complete); every rank waits."""
    trainer.save_checkpoint(path)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (:func:`repro.io.atomic_path`).

    Saved through a file object, not the temporary's name: ``torch.save`` names the zip's records
    after the file it is given, so a random temporary name would make identical checkpoints differ
    byte for byte. The records are named ``archive/…`` instead, and identical contents give an
    identical file (users can compare checkpoints by sha256).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def atomic_checkpoint_io() -> Any:
    """A Lightning ``CheckpointIO`` whose saves are atomic, with :func:`save_torch`.

    Lightning's own saves (the periodic ``last.ckpt`` of ``ModelCheckpoint`` included) go through
    fsspec, which writes a temporary in the system temp directory and *copies* it over the target
    when that is another filesystem (the usual case on a cluster): a kill during the copy leaves a
    truncated ``last.ckpt``. Here the new file is written beside the target and renamed over it
    once complete, so the previous one stays until then.
    """
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(
            self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
        ) -> None:
            if storage_options is not None:
                raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
            save_torch(checkpoint, path)

    return AtomicCheckpointIO()


#: signals that stop a training like its time budget (save ``_work/last.ckpt``, exit 75):
#: SIGTERM (``scancel``, preemption, node drain, ``kill``; the warm worker forwards it to the
#: stage) and SIGUSR1 (the warning SLURM sends before the time limit when the job asks for one,
#: ``--signal=USR1@<seconds>``)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """In a DataLoader worker: ignore :data:`STOP_SIGNALS`. SLURM and the warm worker signal the
    whole process group; a worker killed by SIGTERM would end the training with an error ("DataLoader
    worker exited unexpectedly") before it saves. Workers still exit with their loader."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class StopSignals:
    """Record the first :data:`STOP_SIGNALS` received while training (a context manager).

    The handler only sets :attr:`received`; :class:`TimeBudget` stops on the next optimizer-step
    boundary and saves ``last.ckpt``, exactly as when the time budget runs out. Previous handlers
    are restored on exit. Outside the main thread (no handlers can be set there) it does nothing.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.received is None:
            self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def reclaim(self, already: bool = False) -> None:
        """Handle the signals again (after Lightning replaced the SIGTERM handler); ``already``:
        Lightning's handler saw a SIGTERM meanwhile."""
        if already and self.received is None:
            self.received = signal.SIGTERM
        for sig in self._previous:
            signal.signal(sig, self._handler)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @property
    def name(self) -> str | None:
        return None if self.received is None else signal.Signals(self.received).name


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def setup_logging() -> None:
    """Timestamped INFO lines of the ``repro`` loggers on stderr (the rule's ``{log}``).

    Only the ``repro`` logger gets a handler: Lightning's loggers have their own, and a root
    handler would print their lines twice.
    """
    logger = logging.getLogger("repro")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


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


def _run_digest(run: RunConfig, model_cfg: dict, meta: dict, world: int) -> dict:
    tc = run.train
    default_eval = max(tc.ema_decays) if tc.ema_decays else None
    added = {"warmup_init_lr": 0.0, "ema_eval": default_eval, **_EXPONENTIAL_KEYS}
    # keys added after the first runs are left out at their defaults: the identity (and so the
    # resume state under _work/) of a run that does not use them is what it was before they existed
    train = {
        k: v
        for k, v in tc.to_dict().items()
        if k not in _NON_TRAJECTORY_KEYS and not (k in added and v == added[k])
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
    boundary past :func:`time_budget_seconds` (``stop_margin_s`` before the limit, or the default
    margin), saves ``_work/last.ckpt`` and returns ``completed: False``; so does SIGTERM or
    SIGUSR1 (:class:`StopSignals`) on the next optimizer-step boundary. At train start the world
    (``devices`` x ``num_nodes`` ranks) is checked and logged (:func:`check_world`).
    ``callbacks`` are extra Lightning callbacks (tests, benchmarks). Progress lines every
    ``progress_every_s`` seconds, a bar (``progress_bar``, default: stderr is a terminal) and
    ``loggers`` beside the CSV one (``tensorboard``, ``wandb``): :mod:`repro.progress`.

    Returns:
        A summary dict: ``completed`` (False when the time budget or a :data:`STOP_SIGNALS`
        signal stopped it early; ``stopped_by`` says which),
        ``resumed_from`` (the step this run started at), ``steps``, ``target_steps``,
        ``train_loss``, ``val_loss``, ``seconds``, ``tokens_per_second``, ``world_size``,
        ``parameters``.
    """
    started = time.monotonic()
    run = RunConfig.from_dict(cfg)
    tc = run.train
    try:
        method = methods.get_method(run.method)
    except KeyError as err:
        raise InputError(f"--config-json.method: {err.args[0]}") from None
    data_dir, out = Path(data_dir), Path(out)
    meta = read_meta(data_dir)
    train_arrays = open_split(data_dir, "train", meta)
    val_arrays = open_split(data_dir, "validation", meta) if tc.val_batches > 0 else None
    model_cfg = inject_specials(run.model, meta["specials"], str(data_dir / "meta.json"))

    check_visible_gpus(accelerator, devices)
    progress.check_loggers(loggers, "loggers")
    budget_s = math.inf
    if max_minutes is not None:  # a bad margin fails here, before any work
        budget_s = (
            time_budget_seconds(max_minutes)
            if stop_margin_s is None
            else time_budget_seconds(max_minutes, stop_margin_s)
        )

    pl = _lightning()  # after the cheap checks: bad input fails without the import's seconds
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    progress.quiet_lightning()  # no "Tip:" lines or deprecation warnings in the job's log

    # ``threads`` are the job's CPUs on this node, shared by its ranks there
    torch.set_num_threads(max(int(threads) // max(devices, 1), 1))
    work = out.parent / "_work"
    identity = _run_digest(run, model_cfg, meta, devices * num_nodes)
    digest = _prepare_work_dir(work, identity)

    pl.seed_everything(tc.seed, workers=True, verbose=False)
    model = method.build_model(
        dict(model_cfg), vocab_size=int(meta["vocab_size"]), seq_len=int(meta["seq_len"])
    )
    n_params = sum(p.numel() for p in model.parameters())

    precision = resolve_precision(tc.precision, accelerator)
    TokenDataModule, TrainModule, TimeBudget = build_module_classes()
    module = TrainModule(method, model, tc, digest)
    module.geometry = (devices, num_nodes, len(train_arrays))
    pin = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    dm = TokenDataModule(train_arrays, val_arrays, tc, pin_memory=pin)

    last = work / "last.ckpt"
    checkpointer = ModelCheckpoint(
        dirpath=work,
        save_last=True,
        save_top_k=0,
        every_n_train_steps=tc.ckpt_every,
        enable_version_counter=False,
    )
    stop = StopSignals()
    budget = TimeBudget(budget_s, started, last, tc.ckpt_every, stop)
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
    resume = last if last.exists() else None
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

    world = trainer.world_size
    first = step if module.start_step is None else module.start_step  # None: nothing left to do
    done_steps = step - first
    tokens = done_steps * tc.batch_size * tc.accumulate * world * int(meta["seq_len"])
    loss = module.last_train_loss
    summary = {
        "completed": completed,
        "resumed_from": first,
        "steps": step,
        "target_steps": tc.steps,
        "train_loss": None if loss is None else float(loss),
        "val_loss": module.val_loss,
        "seconds": round(time.monotonic() - started, 3),
        "tokens_per_second": round(tokens / fit_seconds, 1) if fit_seconds > 0 else 0.0,
        "world_size": world,
        "parameters": n_params,
        "stopped_by": None if completed else (stop.name or "time budget"),
    }
    if completed and trainer.is_global_zero:
        weights = module.weights_name()
        alt = module.alt_state_dicts() if isinstance(tc.ema, tuple) else None
        # with alternates the main state_dict is the same tensors as one alternate: torch.save
        # writes shared storage once, so the file holds each set of weights once
        state_dict = module.final_state_dict() if alt is None else dict(alt[weights])
        ckpt = {
            "format": CKPT_FORMAT,
            "method": run.method,
            "model": model_cfg,
            "train": tc.to_dict(),
            "vocab_size": int(meta["vocab_size"]),
            "seq_len": int(meta["seq_len"]),
            "layout": meta["layout"],
            "state_dict": state_dict,
            "weights": weights,
            "step": step,
            "val_loss": module.val_loss,
            "specials": dict(meta["specials"]),
            "tokenizer_sha256": meta.get("tokenizer_sha256"),
        }
        if alt is not None:
            ckpt["alt_state_dicts"] = alt
        save_torch(ckpt, out)  # byte-reproducible
    log.info(
        "summary: steps=%d/%d (from %d) train_loss=%s val_loss=%s seconds=%.1f tokens/s=%.0f%s",
        step,
        tc.steps,
        first,
        _fmt(summary["train_loss"]),
        _fmt(summary["val_loss"]),
        summary["seconds"],
        summary["tokens_per_second"],
        "" if completed else " (incomplete)",
    )
    return summary


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def load_model(
    ckpt_path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    weights: str | None = None,
) -> tuple[Method, nn.Module, dict]:
    """Rebuild the method and model of a ``model.ckpt``: eval mode, on ``map_location``.

    ``weights`` picks the weights to load: ``None`` or the checkpoint's ``weights`` name means
    its main ``state_dict``; otherwise a key of ``alt_state_dicts`` (``raw``, ``ema0.999``, …),
    which runs trained with ``train.ema`` as a list of decays have.
    """
    path = Path(ckpt_path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found; run the train_model stage first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means a bad or foreign file
        raise InputError(
            f"{path}: not a readable torch checkpoint ({err}); retrain to recreate it"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InputError(
            f"{path}: expected format {CKPT_FORMAT!r}, got {got!r}; retrain to recreate it"
        )
    state_dict = _pick_weights(ckpt, weights, path)
    method = methods.get_method(ckpt["method"])
    model = method.build_model(
        dict(ckpt["model"]), vocab_size=ckpt["vocab_size"], seq_len=ckpt["seq_len"]
    )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise InputError(
            f"{path}: weights do not fit method {ckpt['method']!r}'s model ({err})"
        ) from err
    model.to(map_location).eval()
    return method, model, ckpt


def _pick_weights(ckpt: dict, weights: str | None, path: Path) -> dict[str, torch.Tensor]:
    main = ckpt.get("weights")
    if weights is None or weights == main:
        return ckpt["state_dict"]
    alt = ckpt.get("alt_state_dicts") or {}
    if isinstance(weights, str) and weights in alt:
        return alt[weights]
    available = sorted({main, *alt} - {None})
    hint = (
        ""
        if alt
        else "; alternate weights (raw, ema<decay>) exist only for runs trained with train.ema "
        "as a list of decays, e.g. ema: [0.999, 0.9999]"
    )
    raise InputError(f"{path}: no weights {weights!r}; available: {available}{hint}")
