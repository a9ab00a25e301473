"""Tests of the shared backbone :mod:`repro.models.transformer`."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from repro.models import KVCache, Transformer, TransformerConfig, count_parameters
from repro.models.transformer import timestep_embedding

V, L, D = 23, 12, 32


def make(**overrides) -> Transformer:
    kwargs = dict(vocab_size=V, seq_len=L, d_model=D, n_layers=2, n_heads=4)
    kwargs.update(overrides)
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**kwargs)).eval()


def make_input(kind: str, batch: int = 3, length: int = L, d_in: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind == "tokens":
        return torch.randint(0, V, (batch, length), generator=g)
    if kind == "vectors":
        return torch.randn(batch, length, d_in, generator=g)
    return torch.rand(batch, length, V, generator=g).softmax(-1)  # probs on the simplex


@pytest.mark.parametrize(
    "inp,out,pos,time_cond,causal",
    list(
        itertools.product(
            ["tokens", "vectors", "probs"],
            ["logits", "vectors"],
            ["learned", "rope", "sincos"],
            [False, True],
            [False, True],
        )
    ),
)
def test_shapes_of_every_combination(inp, out, pos, time_cond, causal):
    model = make(
        input=inp,
        output=out,
        pos_emb=pos,
        time_cond=time_cond,
        causal=causal,
        d_in=7 if inp == "vectors" else None,
        d_out=5 if out == "vectors" else None,
        adaln_gate=False,  # normal init so t visibly matters
    )
    x = make_input(inp)
    t = torch.tensor([0.1, 0.5, 0.9]) if time_cond else None
    y = model(x, t)
    assert y.shape == (3, L, V if out == "logits" else 5)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_tied_embeddings_share_one_tensor_and_count_once():
    untied, tied = make(), make(tie_embeddings=True)
    assert tied.final.head.weight is tied.tok_emb.weight
    assert count_parameters(untied) - count_parameters(tied) == V * D
    assert count_parameters(tied) == sum(
        p.numel() for p in {id(p): p for p in tied.parameters()}.values()
    )


def test_forward_rejects_wrong_inputs():
    with pytest.raises(ValueError, match="integer ids"):
        make()(torch.randn(2, L, V))
    with pytest.raises(ValueError, match="exceed seq_len"):
        make()(torch.zeros(2, L + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="pass t"):
        make(time_cond=True)(make_input("tokens"))
    with pytest.raises(ValueError, match="time_cond is False"):
        make()(make_input("tokens"), t=0.5)
    with pytest.raises(ValueError, match="floats"):
        make(input="probs")(make_input("tokens"))


@pytest.mark.parametrize("pos", ["learned", "rope", "sincos"])
def test_causal_mask_hides_the_future(pos):
    model = make(causal=True, pos_emb=pos)
    x = make_input("tokens")
    x2 = x.clone()
    x2[:, 7] = (x[:, 7] + 1) % V
    y, y2 = model(x), model(x2)
    torch.testing.assert_close(y[:, :7], y2[:, :7])
    assert (y[:, 7:] - y2[:, 7:]).abs().amax() > 1e-4  # the change is seen from position 7 on


def test_bidirectional_model_sees_the_future():
    model = make(causal=False)
    x = make_input("tokens")
    x2 = x.clone()
    x2[:, 7] = (x[:, 7] + 1) % V
    assert (model(x)[:, :7] - model(x2)[:, :7]).abs().amax() > 1e-4


@pytest.mark.parametrize("pos", ["learned", "rope", "sincos"])
@pytest.mark.parametrize("chunks", [(1,) * L, (5, 1, 3, 1, 2), (L,)])
def test_kv_cache_decoding_equals_full_forward(pos, chunks):
    model = make(causal=True, pos_emb=pos, n_layers=3)
    x = make_input("tokens")
    full = model(x)  # (B, L, V)
    cache = model.new_kv_cache()
    pieces, start = [], 0
    for size in chunks:
        pieces.append(model(x[:, start : start + size], kv_cache=cache))
        start += size
        assert cache.pos == start
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_with_time_conditioning_and_last_only():
    model = make(causal=True, time_cond=True, adaln_gate=False)
    x, t = make_input("tokens"), torch.tensor([0.2, 0.4, 0.6])
    full = model(x, t)
    cache = model.new_kv_cache()
    last = model(x[:, :6], t, kv_cache=cache, last_only=True)
    assert last.shape == (3, 1, V)
    torch.testing.assert_close(last[:, 0], full[:, 5], atol=1e-5, rtol=1e-5)
    nxt = model(x[:, 6:7], t, kv_cache=cache)
    torch.testing.assert_close(nxt[:, 0], full[:, 6], atol=1e-5, rtol=1e-5)


def test_kv_cache_errors():
    with pytest.raises(ValueError, match="causal"):
        make(causal=False).new_kv_cache()
    model = make(causal=True)
    with pytest.raises(ValueError, match="causal"):
        make(causal=False)(make_input("tokens"), kv_cache=KVCache(n_layers=2, max_len=L))
    cache = model.new_kv_cache(max_len=4)
    model(make_input("tokens", length=3), kv_cache=cache)
    with pytest.raises(ValueError, match="overflow"):
        model(make_input("tokens", length=2), kv_cache=cache)


def test_timestep_embedding_layout_and_scale():
    emb = timestep_embedding(torch.tensor([0.0, 0.3]), 8, max_period=100.0)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # [cos | sin] at t=0
    # first frequency is 1: cos(0.3), sin(0.3); last is 100^(-3/4)
    torch.testing.assert_close(emb[1, [0, 4]], torch.tensor([math.cos(0.3), math.sin(0.3)]))
    torch.testing.assert_close(emb[1, 3], torch.tensor(math.cos(0.3 * 100 ** (-3 / 4))))
    model = make(time_cond=True, adaln_gate=False, time_scale=1000.0)
    x = make_input("tokens")
    # time_scale multiplies t before the sinusoid: t=0.001 with scale 1000 == t=1 with scale 1
    ref = make(time_cond=True, adaln_gate=False)
    ref.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(x, 0.001), ref(x, 1.0), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("silu", [True, False])
def test_adaln_output_depends_on_t(silu):
    model = make(time_cond=True, adaln_gate=False, adaln_silu=silu, init_std=0.2)
    x = make_input("tokens")
    y0, y1 = model(x, 0.1), model(x, 0.9)
    assert (y0 - y1).abs().amax() > 1e-3
    per_row = model(x, torch.tensor([0.1, 0.9, 0.1]))
    torch.testing.assert_close(per_row[0], y0[0])
    torch.testing.assert_close(per_row[1], y1[1])


def test_adaln_zero_initialises_blocks_to_identity():
    model = make(time_cond=True, adaln_gate=True)
    h = torch.randn(3, L, D)
    c = model.time_embed(torch.tensor([0.1, 0.5, 0.9]))
    for layer, block in enumerate(model.blocks):
        rope = (model.rope_cos, model.rope_sin)
        torch.testing.assert_close(block(h, c, rope, None, layer), h)
    x = make_input("tokens")
    torch.testing.assert_close(model(x, 0.1), model(x, 0.9))  # t enters only via zeroed layers
    # once the modulation layers move away from zero, t matters and blocks are no identity
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert (model(x, 0.1) - model(x, 0.9)).abs().amax() > 1e-4
    assert (model.blocks[0](h, c, rope, None, 0) - h).abs().amax() > 1e-4


def test_zero_init_output_and_initialisation_scale():
    model = make(output="vectors", d_out=6, zero_init_output=True, pos_emb="sincos")
    assert model(make_input("tokens")).abs().amax() == 0
    model = make(init_std=0.02)
    w = model.blocks[0].mlp.fc.weight
    assert abs(w.std().item() - 0.02) < 0.003
    assert model.blocks[0].mlp.fc.bias.abs().amax() == 0


@pytest.mark.parametrize("pos", ["learned", "rope", "sincos"])
def test_state_dict_roundtrip_is_strict(pos):
    model = make(pos_emb=pos, causal=True, time_cond=True, adaln_gate=False)
    state = model.state_dict()
    assert not any("rope" in k or "pos_table" in k for k in state)  # fixed tables are rebuilt
    clone = Transformer(model.cfg)
    clone.load_state_dict(state, strict=True)
    x = make_input("tokens")
    torch.testing.assert_close(clone.eval()(x, 0.3), model(x, 0.3))


def test_dropout_only_in_training_mode():
    model = make(dropout=0.5)
    x = make_input("tokens")
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert (model(x) - model(x)).abs().amax() > 0
