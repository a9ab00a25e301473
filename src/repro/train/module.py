"""The Lightning side of a training: data module, the module around a method, the time budget.

* :class:`TokenDataModule` — the train stream (:class:`~repro.train.data.TrainStream`, started at
  the resumed micro-batch ``global_step * accumulate``) and the fixed validation batches.
* :class:`TrainModule` — a :class:`~repro.methods.base.Method` and its model: AdamW on two
  parameter groups (weight decay on weights with >= 2 dims only), the closed-form lr schedule
  (:func:`~repro.train.config.lr_factor`), the EMAs, validation on the weights that will be
  saved, and its resumable state in every Lightning checkpoint. Before every step the global torch
  RNG is reseeded from ``(seed, m, rank)`` (:func:`~repro.train.data.derive_seed`), so the method's
  noise does not depend on RNG state that Lightning does not checkpoint.
* :class:`TimeBudget` — stops on the first optimizer-step boundary past the budget or after a stop
  signal, and saves ``last.ckpt``.

Importing this module imports Lightning (seconds): :func:`repro.train.run.train` imports it only
after the cheap checks of its input.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from repro.io import InputError
from repro.methods.base import Batch, Method
from repro.models import count_parameters
from repro.tokenization.arrays import TokenizedSplit

from .config import TrainConfig, ema_weights_name, lr_factor
from .data import TrainStream, ValBatches, derive_seed
from .ema import EMA
from .signals import StopSignals, ignore_stop_signals
from .world import check_world

log = logging.getLogger("repro.train")


def _cpu_copy(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in sd.items()}




class TokenDataModule(pl.LightningDataModule):
    def __init__(
        self, train: TokenizedSplit, val: TokenizedSplit | None, cfg: TrainConfig, pin_memory: bool
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
        n_params = count_parameters(self.model)
        n_train = count_parameters(self.model, trainable_only=True)
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
        if step % self.ckpt_every != 0:  # otherwise ModelCheckpoint saves this step next
            # rank 0 writes it through atomic_checkpoint_io (never a torn file); every rank waits
            trainer.save_checkpoint(self.last_ckpt)

