"""Registry of methods: name -> ``"module:Class"``, imported lazily.

The Snakefile reads :data:`REGISTRY` (cheap: no torch import) to know which methods exist; an
experiment naming a method not listed here is a config error at DAG build.
Add a method by writing ``methods/<name>.py`` and one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Method


@dataclass(frozen=True)
class MethodInfo:
    """What the workflow needs to know about a method without importing torch."""

    module: str  # source file: src/repro/methods/<module>.py
    cls: str  # the Method subclass in that module
    layouts: dict[str, str]  # dataset kind -> token layout the method trains on
    samplers: tuple[str, ...]  # sampler kinds it implements
    model_keys: tuple[str, ...]  # keys accepted in an experiment's `model:` block
    #: its sampler/NFE rules in repro.methods.options (checked at DAG build; None: by sample only)
    sampler_checks: str | None = None
    #: its trained model has word embeddings another experiment may take (``from:<experiment>``)
    exports_embeddings: bool = False


#: method name -> MethodInfo (``experiments.<name>.method`` must be one of these keys).
REGISTRY: dict[str, MethodInfo] = {
    "ar": MethodInfo(
        module="ar",
        cls="Autoregressive",
        layouts={"seq2seq": "conditional", "text": "lm", "code": "infill_ar"},
        samplers=("ancestral", "greedy"),
        model_keys=("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout", "pos_emb",
                    "tie_embeddings"),
        sampler_checks="ar",
    ),
    # DiffuSeq (ICLR 2023) as its public code trains it: methods.md §1
    "diffuseq": MethodInfo(
        module="diffuseq",
        cls="DiffuSeq",
        layouts={"seq2seq": "diffuseq"},
        samplers=("ddpm", "ddim_gap", "ddim_respaced"),
        model_keys=("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout", "emb_dim",
                    "diffusion_steps", "schedule"),
        sampler_checks="diffuseq",
        exports_embeddings=True,
    ),
    # FM-seq2seq (Shah): flow matching on frozen word embeddings, Euler sampling: methods.md §2
    "embedding_fm": MethodInfo(
        module="embedding_fm",
        cls="EmbeddingFM",
        layouts={"seq2seq": "halves"},
        samplers=("euler",),
        model_keys=("d_model", "n_layers", "n_heads", "mlp_ratio", "time_dim", "time_max_period",
                    "emb_dim", "embeddings", "embeddings_trainable", "emb_seed",
                    "emb_loss_weight"),
        sampler_checks="embedding_fm",
        exports_embeddings=True,
    ),
    # Discrete flow matching (Gat et al.), mask source, mixture Euler sampler: methods.md §4, §3.6
    "dfm": MethodInfo(
        module="dfm",
        cls="DFM",
        layouts={"text": "lm", "seq2seq": "conditional", "code": "infill"},
        samplers=("mixture_euler",),
        model_keys=("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout", "pos_emb",
                    "time_dim", "scheduler", "exponent", "loss"),
        sampler_checks="dfm",
    ),
    # KL-flow (Sevriugov & Oseledets): logit-linear KL geodesics on the simplex: methods.md §3
    "klflow": MethodInfo(
        module="klflow",
        cls="KLFlow",
        layouts={"text": "lm", "seq2seq": "conditional", "code": "infill"},
        samplers=("basic", "semi_sampling", "sampling", "hybrid"),
        model_keys=("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout", "pos_emb", "beta",
                    "t_max", "time_param", "time_scale"),
        sampler_checks="klflow",
    ),
}


def get_method(name: str) -> Method:
    """Instantiate the method registered as ``name`` (clear error for unknown names)."""
    try:
        info = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered methods: {sorted(REGISTRY)}") from None
    return getattr(importlib.import_module(f"repro.methods.{info.module}"), info.cls)()


def method_source_files(name: str) -> list[str]:
    """Package-relative source files whose content determines a method's trained model."""
    # methods/__init__.py is left out on purpose: registering a new method must not retrain others.
    return ["methods/base.py", f"methods/{REGISTRY[name].module}.py"]
