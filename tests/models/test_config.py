"""Tests of :mod:`repro.models.config`: validation and :meth:`TransformerConfig.from_model`."""

from __future__ import annotations

import pytest

from repro.io import InputError
from repro.models import TransformerConfig

V, L, D = 23, 12, 32


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(n_heads=5), "divisible"),
        (dict(pos_emb="alibi"), "pos_emb"),
        (dict(input="vectors"), "d_in"),
        (dict(output="vectors", d_out=0), "d_out"),
        (dict(d_in=3), "d_in is only used"),
        (dict(input="probs", tie_embeddings=True), "tie_embeddings"),
        (dict(dropout=1.5), "dropout"),
        (dict(d_model=32.0), "d_model"),
    ],
)
def test_config_rejects_bad_values_with_named_key(overrides, match):
    kwargs = dict(vocab_size=V, seq_len=L, d_model=D, n_layers=2, n_heads=4)
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**kwargs)


def test_from_model_takes_the_backbone_keys_and_the_fixed_fields():
    model = dict(d_model=D, n_layers=2, n_heads=4, dropout=0.1, beta=0.01, emb_dim=8)
    cfg = TransformerConfig.from_model(model, vocab_size=V, seq_len=L, causal=True, bias=False)
    assert cfg == TransformerConfig(
        vocab_size=V, seq_len=L, d_model=D, n_layers=2, n_heads=4, dropout=0.1, causal=True,
        bias=False,
    )  # beta and emb_dim are the method's own keys


def test_from_model_errors():
    model = dict(d_model=D, n_layers=2, n_heads=5)
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig.from_model(model, vocab_size=V, seq_len=L)
    with pytest.raises(InputError, match="^model config of method 'x': .*divisible"):
        TransformerConfig.from_model(model, vocab_size=V, seq_len=L, where="model config of method 'x'")
    with pytest.raises(TypeError, match="both in the model and fixed"):
        TransformerConfig.from_model(dict(model, n_heads=4), vocab_size=V, seq_len=L, n_heads=4)
