"""Tokenization stage: train/load tokenizers (:mod:`.vocab`) and encode rows into layouts
(:mod:`.layouts`, with :mod:`.seq2seq_layouts` and :mod:`.code_layouts`); the arrays on disk are
written and read back by :mod:`.arrays` (stream-packed shards: :mod:`.shards`). Contract:
docs/architecture.md, "Special tokens and meta.json" and "Layouts".

CLI: ``python -m repro.tokenization {train,encode} …`` (see :mod:`.__main__`).
"""

from __future__ import annotations

from .layouts import (
    LAYOUTS,
    Encoded,
    EncodedSplit,
    Layout,
    TokenizedSplit,
    choose_masked_lines,
    encode_split,
    get_layout,
    infer_kind,
    layouts_for,
    load_layout_from_meta,
    load_tokenized,
    read_meta,
    split_lines,
    tokenizer_sha256,
    write_tokenized,
)
from .vocab import (
    SPECIAL_TOKENS,
    Specials,
    load_pretrained,
    load_tokenizer,
    specials_of,
    train_tokenizer,
)

__all__ = [
    "LAYOUTS",
    "SPECIAL_TOKENS",
    "Encoded",
    "EncodedSplit",
    "Layout",
    "Specials",
    "TokenizedSplit",
    "choose_masked_lines",
    "encode_split",
    "get_layout",
    "infer_kind",
    "layouts_for",
    "load_layout_from_meta",
    "load_pretrained",
    "load_tokenized",
    "load_tokenizer",
    "read_meta",
    "specials_of",
    "split_lines",
    "tokenizer_sha256",
    "train_tokenizer",
    "write_tokenized",
]
