"""The training configuration: ``train`` options, the run's ``--config-json``, lr schedule, budget.

* :class:`TrainConfig` — the validated ``train`` sub-config (unknown keys are rejected by name;
  defaults filled in, ``val_every`` resolved to ``max(steps // 4, 1)``, ``ckpt_every`` to
  ``val_every``).
* :class:`RunConfig` — ``{"method", "model", "train"}`` of ``python -m repro.train --config-json``.
* :func:`lr_factor` — the closed-form learning-rate multiplier at an optimizer step (warm-up, then
  cosine / linear / constant / exponential).
* :func:`time_budget_seconds` — the seconds of training a job of ``--max-minutes`` allows.

Only the standard library is imported here (torch on first use of :func:`resolve_precision`), so
the configuration can be checked without the cost of importing torch or Lightning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from repro.io import InputError

SCHEDULES = ("cosine", "linear", "constant", "exponential")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
#: train keys that do not change the optimisation trajectory (ignored when matching a resume)
NON_TRAJECTORY_KEYS = ("num_workers", "val_every", "val_batches", "ckpt_every")


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
        vals = _number_values(raw, where)
        vals.update(_ema_values(raw, where))
        vals.update(_choice_values(raw, where))
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


#: integer keys of ``train`` and their minimum
_INT_KEYS = {
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
#: float keys of ``train``: (lower bound, upper bound or None, lower bound allowed)
_FLOAT_KEYS = {
    "lr": (0.0, None, False),
    "min_lr_ratio": (0.0, 1.0, True),
    "warmup_init_lr": (0.0, None, True),
    "decay_rate": (0.0, 1.0, False),
    "weight_decay": (0.0, None, True),
    "eps": (0.0, None, False),
    "grad_clip": (0.0, None, True),
}


def _number_values(raw: dict, where: str) -> dict[str, Any]:
    """The integer and float keys present in ``raw``, checked (ints first, then floats)."""
    vals: dict[str, Any] = {}
    for key, lo in _INT_KEYS.items():
        if key in raw:
            vals[key] = _int(raw[key], f"{where}.{key}", lo)
    for key, (lo, hi, lo_ok) in _FLOAT_KEYS.items():
        if key in raw:
            vals[key] = _float(raw[key], f"{where}.{key}", lo, hi, lo_ok)
    return vals


def _ema_values(raw: dict, where: str) -> dict[str, Any]:
    """``ema`` (when present) and the resolved ``ema_eval``, checked against the decays."""
    out: dict[str, Any] = {}
    if "ema" in raw:
        out["ema"] = _ema(raw["ema"], f"{where}.ema")
    decays = _ema_decays(out.get("ema", 0.0))
    eval_decay = raw.get("ema_eval")
    if eval_decay is None:
        out["ema_eval"] = max(decays) if decays else None
        return out
    eval_decay = _float(eval_decay, f"{where}.ema_eval", 0.0, 1.0, False)
    if eval_decay not in decays:
        have = f"the decays are {list(decays)}" if decays else "EMA is off (ema: 0)"
        raise InputError(
            f"{where}.ema_eval is {eval_decay} but {have}; set it to one of the "
            f"{where}.ema decays or remove it (default: the largest decay)"
        )
    out["ema_eval"] = eval_decay
    return out


def _choice_values(raw: dict, where: str) -> dict[str, Any]:
    """``betas`` (two numbers in [0, 1)) and the named choices ``schedule`` and ``precision``."""
    vals: dict[str, Any] = {}
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
                raise InputError(f"{where}.{key} is {raw[key]!r}; choose one of {list(choices)}")
            vals[key] = raw[key]
    return vals


#: ``decay_*`` keys of ``schedule: exponential`` and their defaults (rejected elsewhere when set)
EXPONENTIAL_KEYS = {"decay_begin": 0, "decay_rate": 1.0, "decay_steps": 1}


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
        extra = sorted(k for k, d in EXPONENTIAL_KEYS.items() if vals.get(k, d) != d)
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
            from repro import methods  # torch and the models: imported only for this message

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


def on_cuda(accelerator: str) -> bool:
    """Whether a run with this ``accelerator`` (``gpu``/``cuda``, or ``auto`` with a CUDA device
    visible) trains on CUDA."""
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` means bf16 autocast on CUDA and full fp32 on CPU."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if on_cuda(accelerator) else "32-true"


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

