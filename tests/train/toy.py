"""A tiny self-contained method and toy tokenized data for the training tests.

An embedding + linear next-token model whose loss draws random corruption from the global torch
RNG, and a tokenized directory written with numpy, stand in for the real methods and tokenizer,
so the tests exercise only the training machinery.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.methods.base import Batch, Method, Samples

SPECIALS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4, "bos": 5, "eos": 6}
VOCAB, SEQ = 24, 12


class TinyLM(nn.Module):
    def __init__(self, vocab: int, d: int, mask_id: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, vocab)
        self.mask_id = mask_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.emb(ids)))  # (B, L, V)


class FakeMethod(Method):
    name = "fake"
    samplers = ("greedy",)

    def layout(self, task_kind: str) -> str:
        return "conditional"

    def build_model(self, model_cfg: dict, vocab_size: int, seq_len: int) -> nn.Module:
        return TinyLM(vocab_size, model_cfg.get("d", 8), model_cfg["mask_id"])

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        ids, cond = batch.ids, batch.cond
        drop = (torch.rand(ids.shape) < 0.3) & ~cond  # global RNG: resume must replay it
        inp = torch.where(drop, torch.full_like(ids, model.mask_id), ids)
        logits = model(inp[:, :-1])
        weight = (~cond[:, 1:]).float()
        ce = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        return (ce * weight).sum() / weight.sum().clamp(min=1.0)

    def sample(self, model, cond, nfe, sampler, generator, **opts) -> Samples:
        raise NotImplementedError


def write_tokenized(root: Path, n_train: int = 40, n_val: int = 12) -> Path:
    """A learnable toy task: [BOS] a b c d [SEP] a b c d [EOS] [PAD] (target copies the source)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in (("train", n_train), ("validation", n_val)):
        ids = np.zeros((n, SEQ), np.int32)
        cond = np.zeros((n, SEQ), np.uint8)
        src = rng.integers(7, VOCAB, (n, 4))
        ids[:, 0], ids[:, 1:5], ids[:, 5] = SPECIALS["bos"], src, SPECIALS["sep"]
        ids[:, 6:10], ids[:, 10] = src, SPECIALS["eos"]
        cond[:, :6] = 1
        np.save(root / f"{split}.ids.npy", ids)
        np.save(root / f"{split}.cond.npy", cond)
        splits[split] = {"n": n, "row_ids": [f"toy/{split}/{i}" for i in range(n)], "dropped": 0}
    write_meta(root, splits, SEQ, VOCAB, "0" * 64)
    return root


def write_meta(root: Path, splits: dict, seq_len: int, vocab_size: int, tokenizer_sha: str) -> None:
    """``meta.json`` of a toy ``conditional`` layout directory with these ``splits``."""
    meta = {
        "layout": "conditional",
        "options": {},
        "seq_len": seq_len,
        "vocab_size": vocab_size,
        "specials": SPECIALS,
        "tokenizer_sha256": tokenizer_sha,
        "splits": splits,
    }
    (root / "meta.json").write_text(json.dumps(meta))


# Exercises warm-up, cosine decay, weight decay, clipping, accumulation and EMA together.
RESUME_TRAIN = {
    "steps": 6,
    "batch_size": 8,
    "lr": 3.0e-2,
    "warmup_steps": 2,
    "weight_decay": 0.1,
    "grad_clip": 0.5,
    "accumulate": 2,
    "ema": 0.8,
    "val_every": 3,
    "val_batches": 1,
    "ckpt_every": 2,
}


def run_cfg(**train_over) -> dict:
    return {"method": "fake", "model": {"d": 8}, "train": {**RESUME_TRAIN, **train_over}}


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def final_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def weight_recorder(history: list[dict[str, torch.Tensor]]) -> Any:
    """A Lightning callback that appends the model's parameters to ``history`` at train start and
    after every training batch."""
    import lightning.pytorch as pl

    class Record(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            history.append({k: v.detach().clone() for k, v in pl_module.model.named_parameters()})

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            history.append({k: v.detach().clone() for k, v in pl_module.model.named_parameters()})

    return Record()
