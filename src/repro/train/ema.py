"""Exponential moving averages of the trainable weights, kept through checkpoints and resumes.

After every optimizer step each EMA does ``shadow <- decay * shadow + (1 - decay) * param``
(``lerp`` towards the parameter by ``1 - decay``), for trainable parameters only; shadows start
from the initial weights. ``train.ema`` lists one decay or several kept side by side.
"""

from __future__ import annotations

import torch
from torch import nn

from repro.io import InputError


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

