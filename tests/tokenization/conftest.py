"""Shared fixtures: small tokenizers trained in-process (nothing is downloaded)."""

from __future__ import annotations

import pytest
from tok_samples import CODE, WORDS

from repro.tokenization import train_tokenizer


@pytest.fixture(scope="session")
def word_tok():
    return train_tokenizer([WORDS, WORDS.upper()], {"algorithm": "wordlevel", "vocab_size": 200})


@pytest.fixture(scope="session")
def code_tok():
    return train_tokenizer(CODE * 3, {"algorithm": "bytelevel_bpe", "vocab_size": 400})


@pytest.fixture()
def w(word_tok):
    """Ids of a space-separated string under the word-level tokenizer."""

    def ids(text: str) -> list[int]:
        out = [word_tok.token_to_id(t) for t in text.split()]
        assert None not in out, text
        return out

    return ids
