"""Network backbones shared by the methods (see :mod:`repro.models.transformer`)."""

from __future__ import annotations

from .config import TransformerConfig
from .transformer import KVCache, Transformer, count_parameters

__all__ = ["KVCache", "Transformer", "TransformerConfig", "count_parameters"]
