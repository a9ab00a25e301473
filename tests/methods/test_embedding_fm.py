"""Tests of FM-seq2seq, :mod:`repro.methods.embedding_fm` (methods.md §2).

The learning test at the end is the correctness proof: a tiny DiT trained with this file's loss on
random frozen embeddings and sampled with this file's Euler sampler solves a synthetic seq2seq task
(target = source under a fixed token permutation), far above the copy-the-source baseline.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from repro.io import InputError
from repro.methods import embedding_fm
from repro.methods.base import Batch
from repro.methods.embedding_fm import EmbeddingFM, nearest_tokens
from repro.models.transformer import timestep_embedding

PAD, UNK, CLS, SEP, MASK, BOS, EOS = range(7)
V, L, H, D = 23, 16, 8, 16  # vocabulary, sequence (two halves of H), embedding width
IDS = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS, sep_id=SEP, mask_id=MASK)
#: target = MAP[source]: a derangement of the 16 content tokens, specials kept
MAP = torch.arange(V)
MAP[7:] = torch.roll(torch.arange(7, V), 5)


def config(**overrides) -> dict:
    cfg = dict(d_model=32, n_layers=2, n_heads=4, emb_dim=D, time_dim=32, embeddings="random")
    cfg.update(IDS)
    cfg.update(overrides)
    return cfg


def build(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return EmbeddingFM().build_model(config(**overrides), vocab_size=V, seq_len=L)


def randomise_head(model, seed: int = 0) -> None:
    """Give the zero-initialised output layer random weights, so the network output is visible."""
    g = torch.Generator().manual_seed(seed)
    head = model.net.final.head
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.3)
        head.bias.copy_(torch.randn(head.bias.shape, generator=g) * 0.3)


def halves_batch(n_rows: int, seed: int = 0) -> Batch:
    """``halves`` rows: ``[CLS] a₁…aₙ [SEP] [SEP] [PAD]…`` on each side, target = MAP[source]."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(2, 6, (n_rows, 1), generator=g)  # content tokens per row
    pos = torch.arange(H)[None]  # (1, H)
    half = torch.randint(7, V, (n_rows, H), generator=g)
    half = torch.where(pos == 0, CLS, half)
    half = torch.where((pos == n + 1) | (pos == n + 2), SEP, half)  # the double-[SEP] quirk
    half = torch.where(pos > n + 2, PAD, half)
    ids = torch.cat([half, MAP[half]], dim=1)  # (B, L)
    cond = torch.zeros(n_rows, L, dtype=torch.bool)
    cond[:, :H] = True
    return Batch(ids, cond)


def hidden(batch: Batch) -> Batch:
    """What the sample stage passes: the target half is [PAD]."""
    return Batch(torch.where(batch.cond, batch.ids, PAD), batch.cond)


def record_calls(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x, t) of every forward call of ``model``."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    model.register_forward_pre_hook(lambda mod, args: calls.append((args[0].clone(), args[1])))
    return calls


# ------------------------------------------------------------------------------------------------
# interface and build_model
# ------------------------------------------------------------------------------------------------


def test_interface_and_layouts():
    method = EmbeddingFM()
    assert method.name == "embedding_fm" and method.samplers == ("euler",)
    assert method.layout("seq2seq") == "halves"
    for kind in ("text", "code", "images"):
        with pytest.raises(InputError, match="has no layout for task kind"):
            method.layout(kind)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(dmodel=32), "unknown key"),
        (dict(embeddings=None), "embeddings must be"),
        (dict(emb_dim=0), "emb_dim must be an int >= 1"),
        (dict(emb_seed=-1), "emb_seed must be an int >= 0"),
        (dict(emb_loss_weight=0.5), "only applies to trained embeddings"),
        (dict(embeddings="trained", emb_loss_weight=-1), "emb_loss_weight must be"),
        (dict(pad_id=V), "pad_id"),
        (dict(d_model=30), "divisible by n_heads"),
        (dict(time_max_period=0.0), "time_max_period"),
        (dict(embeddings="diffuseq"), "train stage must export"),
    ],
)
def test_build_model_rejects_bad_configs(overrides, message):
    with pytest.raises(InputError, match=message):
        build(**overrides)


def test_build_model_requires_keys():
    for key in ("d_model", "n_layers", "n_heads", "embeddings"):
        cfg = config()
        del cfg[key]
        with pytest.raises(InputError, match=f"lacks '{key}'"):
            EmbeddingFM().build_model(cfg, vocab_size=V, seq_len=L)


def test_backbone_follows_fms_dit():
    model = build(n_heads=4, time_dim=24, time_max_period=100.0)
    cfg = model.cfg
    assert cfg.time_cond and not cfg.causal and cfg.pos_emb == "sincos"
    assert not cfg.adaln_gate and not cfg.adaln_silu  # FMS: no gates, c fed directly
    assert (cfg.input, cfg.d_in, cfg.output, cfg.d_out) == ("vectors", D, "vectors", D)
    assert cfg.time_freq_dim == 256 and cfg.time_dim == 24 and cfg.time_max_period == 100.0
    assert cfg.activation == "gelu_tanh" and cfg.norm_eps == 1e-6 and cfg.dropout == 0.0
    assert (model.pad_id, model.eos_id) == (PAD, EOS)


def test_initialisation_is_fms_flax():
    model = build(d_model=64, n_layers=1, n_heads=4, time_dim=256)
    net = model.net
    # final Dense zero-initialised
    assert not net.final.head.weight.any() and not net.final.head.bias.any()
    # LeCun normal (truncated at 2σ, variance 1/fan_in) on every other Dense, zero biases
    for lin in (net.in_proj, net.blocks[0].mlp.fc, net.blocks[0].mlp.proj, net.time_embed.mlp[0]):
        w = lin.weight
        std = 1.0 / math.sqrt(w.shape[1])
        assert w.std().item() == pytest.approx(std, rel=0.1)
        assert w.abs().max().item() <= 2.0 * std / 0.8796 + 1e-6
        assert not lin.bias.any()
    # attention q, k, v and out: xavier-uniform on each d×d matrix, bound sqrt(6 / 2d)
    attn = net.blocks[0].attn
    bound = math.sqrt(6.0 / (2 * 64))
    for w in (*attn.qkv.weight.chunk(3, dim=0), attn.proj.weight):
        assert w.abs().max().item() <= bound + 1e-6
        assert w.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.1)


def test_zero_initialised_output_gives_zero_initial_velocity():
    model = build()
    x = torch.randn(3, L, D)
    v = model(x, torch.tensor([0.0, 0.4, 0.9]))
    assert v.shape == (3, L, D)
    assert not v.any()


def test_shapes_and_forward():
    model = build()
    randomise_head(model)
    x = torch.randn(5, L, D)
    v = model(x, torch.rand(5))
    assert v.shape == (5, L, D) and torch.isfinite(v).all()
    assert model(x[:, :10], 0.5).shape == (5, 10, D)  # shorter rows, scalar t
    assert model.embed(torch.tensor([[0, 1, 2]])).shape == (1, 3, D)


def test_time_max_period_option_changes_the_model():
    a = build(time_max_period=100.0)
    b = build(time_max_period=10000.0)
    for model in (a, b):
        randomise_head(model)
    t = torch.tensor([0.25, 0.75])
    # same initial weights (same seed), different sinusoid
    assert torch.equal(a.net.time_embed.mlp[0].weight, b.net.time_embed.mlp[0].weight)
    emb = timestep_embedding(t, 256, 100.0)
    assert torch.allclose(a.net.time_embed(t), a.net.time_embed.mlp(emb))
    x = torch.randn(2, L, D)
    assert not torch.allclose(a(x, t), b(x, t))


def test_embedding_sources():
    frozen = build(emb_seed=3)
    # a frozen buffer saved with the model, drawn from emb_seed alone (not the global RNG)
    assert "embedding" in frozen.state_dict()
    assert all(p is not frozen.embedding for p in frozen.parameters())
    assert frozen.embedding.shape == (V, D)
    assert torch.equal(build(seed=7, emb_seed=3).embedding, frozen.embedding)
    assert not torch.equal(build(emb_seed=4).embedding, frozen.embedding)
    assert frozen.embedding.std().item() == pytest.approx(1.0, abs=0.15)  # N(0, 1)
    # not the noise stream of a sampler generator with the same seed
    noise = torch.randn((V, D), generator=torch.Generator().manual_seed(3))
    assert not torch.equal(noise, frozen.embedding)
    # trained: a parameter under the same state_dict key
    trained = build(embeddings="trained", emb_seed=3)
    assert any(p is trained.embedding for p in trained.parameters())
    assert torch.equal(trained.embedding.detach(), frozen.embedding)
    # checkpoint round trip (strict)
    other = build(seed=1, emb_seed=9)
    other.load_state_dict(frozen.state_dict(), strict=True)
    assert torch.equal(other.embedding, frozen.embedding)


def test_npy_embeddings(tmp_path):
    matrix = np.random.default_rng(0).normal(size=(V, D)).astype(np.float64)
    path = tmp_path / "word_embedding.npy"
    np.save(path, matrix)
    model = build(embeddings=str(path))
    assert model.embedding.dtype == torch.float32
    assert torch.allclose(model.embedding, torch.from_numpy(matrix).float())
    assert all(p is not model.embedding for p in model.parameters())  # frozen
    with pytest.raises(InputError, match=r"word_embedding\.npy.*shape \(23, 16\).*\(23, 8\)"):
        build(embeddings=str(path), emb_dim=8)
    bad = tmp_path / "short.npy"
    np.save(bad, matrix[:-1])
    with pytest.raises(InputError, match=r"short\.npy.*\(22, 16\)"):
        build(embeddings=str(bad))
    with pytest.raises(InputError, match="missing.npy' not found"):
        build(embeddings=str(tmp_path / "missing.npy"))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((V, D), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="finite floats"):
        build(embeddings=str(nan))


# ------------------------------------------------------------------------------------------------
# loss
# ------------------------------------------------------------------------------------------------


def test_loss_is_the_velocity_mse_over_all_positions():
    method, model = EmbeddingFM(), build()
    batch = halves_batch(6)
    calls = record_calls(model)
    torch.manual_seed(11)
    loss = method.loss(model, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # the same noise by hand: t then z from the global RNG
    torch.manual_seed(11)
    t = torch.rand(6)
    z = torch.randn(6, L, D)
    x1 = model.embedding[batch.ids]  # (B, L, D)
    given = batch.cond[..., None]
    x0 = torch.where(given, x1, z)
    target = x1 - x0
    assert not target[:, :H].any()  # the source half's target velocity is exactly zero
    xt, t_seen = calls[0]
    assert torch.equal(t_seen, t)
    tt = t[:, None, None]
    assert torch.allclose(xt, (1 - tt) * x0 + tt * x1, atol=1e-6)
    assert torch.allclose(xt[:, :H], x1[:, :H], atol=1e-6)  # source half is E[src] at every t
    # zero-initialised output: v = 0, so the loss is the mean of target² over all B·L·D entries
    assert loss.item() == pytest.approx(target.square().mean().item(), rel=1e-6)
    assert loss.item() == pytest.approx(target[:, H:].square().mean().item() / 2, rel=1e-6)


def test_loss_backward_and_frozen_embeddings():
    method, model = EmbeddingFM(), build()
    randomise_head(model)
    loss = method.loss(model, halves_batch(4))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.net.in_proj.weight.grad.abs().sum() > 0
    assert model.embedding.grad is None and not model.embedding.requires_grad


def test_trained_embeddings_add_the_rounding_ce():
    method = EmbeddingFM()
    batch = halves_batch(4)
    plain = build(embeddings="trained", emb_loss_weight=0.0)
    anchored = build(embeddings="trained")
    torch.manual_seed(5)
    mse = method.loss(plain, batch)
    torch.manual_seed(5)
    total = method.loss(anchored, batch)
    # v = 0 at init, so x̂₁ = x_t and the extra term is a CE over V tokens: positive
    assert total.item() > mse.item() + 0.1
    total.backward()
    assert anchored.embedding.grad is not None and anchored.embedding.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# sampler
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nfe", [1, 2, 16])
def test_euler_nfe_equals_forward_calls(nfe):
    method, model = EmbeddingFM(), build()
    randomise_head(model)
    calls = record_calls(model)
    batch = hidden(halves_batch(3))
    out = method.sample(model, batch, nfe, "euler", torch.Generator().manual_seed(0))
    assert out.nfe == nfe == len(calls)
    times = [c[1] for c in calls]
    for i, t in enumerate(times):
        assert t.shape == (3,) and torch.allclose(t, torch.full((3,), i / nfe))
    assert times[-1][0].item() == pytest.approx(1.0 - 1.0 / nfe)
    assert model.training  # mode restored


def test_source_half_is_never_changed():
    method, model = EmbeddingFM(), build()
    randomise_head(model)
    calls = record_calls(model)
    batch = hidden(halves_batch(4))
    out = method.sample(model, batch, 8, "euler", torch.Generator().manual_seed(0))
    src = model.embedding[batch.ids[:, :H]]  # (B, H, D)
    assert len(calls) == 8
    for x, _ in calls:
        assert torch.equal(x[:, :H], src)
    assert torch.equal(out.ids[:, :H], batch.ids[:, :H])
    assert out.ids.shape == batch.ids.shape and out.ids.dtype == torch.int64


def test_euler_integrates_a_constant_velocity():
    """v ≡ c (zero kernel, bias c): after N steps of h = 1/N, x₁ = z + c on the target half."""
    method, model = EmbeddingFM(), build()
    c = torch.randn(D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model.net.final.head.bias.copy_(c)
    batch = hidden(halves_batch(5))
    z = torch.randn((5, L, D), generator=torch.Generator().manual_seed(4))
    expected = nearest_tokens((z[:, H:] + c).reshape(-1, D), model.embedding).view(5, H)
    for nfe in (1, 3):
        out = method.sample(model, batch, nfe, "euler", torch.Generator().manual_seed(4))
        assert torch.equal(out.ids[:, H:], expected)


def test_rounding_is_the_nearest_neighbour(monkeypatch):
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(50, 8, generator=g) * torch.rand(50, 1, generator=g) * 3  # varied norms
    x = torch.randn(333, 8, generator=g) * 2
    brute = ((x[:, None].double() - emb[None].double()) ** 2).sum(-1).argmin(-1)  # (N,)
    assert torch.equal(nearest_tokens(x, emb), brute)
    monkeypatch.setattr(embedding_fm, "ROUND_BLOCK", 50 * 7)  # 7 positions per block
    assert torch.equal(nearest_tokens(x, emb), brute)
    # a row of E is its own nearest neighbour
    assert torch.equal(nearest_tokens(emb, emb), torch.arange(50))


def test_sampling_is_deterministic_under_the_generator():
    method, model = EmbeddingFM(), build()
    randomise_head(model)
    batch = hidden(halves_batch(6))
    state = torch.get_rng_state()
    a = method.sample(model, batch, 4, "euler", torch.Generator().manual_seed(7)).ids
    torch.manual_seed(123)  # the global RNG plays no part
    b = method.sample(model, batch, 4, "euler", torch.Generator().manual_seed(7)).ids
    c = method.sample(model, batch, 4, "euler", torch.Generator().manual_seed(8)).ids
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.set_rng_state(state)
    method.sample(model, batch, 2, "euler", torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)


def test_sample_rejects_bad_arguments():
    method, model = EmbeddingFM(), build()
    batch = hidden(halves_batch(2))
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="no sampler 'ddim'"):
        method.sample(model, batch, 4, "ddim", g)
    with pytest.raises(InputError, match="unknown to method 'embedding_fm'"):
        method.sample(model, batch, 4, "euler", g, temperature=1.0)
    for nfe in (0, -1, 2.0, True):
        with pytest.raises(InputError, match="nfe must be a positive int"):
            method.sample(model, batch, nfe, "euler", g)
    long = Batch(torch.zeros(2, L + 2, dtype=torch.long), torch.ones(2, L + 2, dtype=torch.bool))
    with pytest.raises(InputError, match="seq_len"):
        method.sample(model, long, 4, "euler", g)


# ------------------------------------------------------------------------------------------------
# learning
# ------------------------------------------------------------------------------------------------


def test_learns_a_token_mapping_in_the_halves_layout():
    """d_model 64, 2 layers, emb_dim 16, random frozen E; Adam 2e-3, batch 128, 300 steps.

    Target-half token accuracy at NFE 1 and 16 on 512 fresh rows, against copying the source,
    chance (1/23) and the untrained model. Outcomes measured on CPU: benchmarks/README.md, "Learning tests".
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads on a busy 2-core runner is several times slower
    try:
        method = EmbeddingFM()
        model = build(d_model=64, n_layers=2, n_heads=4, emb_dim=16, time_dim=64)
        test = halves_batch(512, seed=99)
        target = test.ids[:, H:]  # (512, H)
        content = target >= 7

        def accuracy(nfe: int) -> tuple[float, float]:
            out = method.sample(model, hidden(test), nfe, "euler", torch.Generator().manual_seed(0))
            hit = out.ids[:, H:] == target
            return hit.float().mean().item(), hit[content].float().mean().item()

        copy = (test.ids[:, :H] == target).float().mean().item()
        untrained, _ = accuracy(1)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(1)
        start = time.monotonic()
        for step in range(300):
            batch = halves_batch(128, seed=int(torch.randint(1 << 30, (), generator=g)))
            torch.manual_seed(1000 + step)  # as the training loop: reseed before every step
            loss = method.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds = time.monotonic() - start
        (acc1, content1), (acc16, content16) = accuracy(1), accuracy(16)
    finally:
        torch.set_num_threads(threads)
    print(
        f"trained 300 steps in {seconds:.1f}s, loss {loss.item():.4f}; accuracy NFE 1: {acc1:.3f} "
        f"(content {content1:.3f}), NFE 16: {acc16:.3f} (content {content16:.3f}); "
        f"copy {copy:.3f}, untrained {untrained:.3f}, chance {1 / V:.3f}"
    )
    assert 0.5 < copy < 0.62
    assert untrained < 0.2
    for acc, acc_content in ((acc1, content1), (acc16, content16)):
        assert acc > copy + 0.3  # clearly above copying the source
        assert acc_content > 0.85  # the mapping itself was learned (copy gets 0 here)


# ------------------------------------------------------------------------------------------------
# nearest-neighbour rounding at the real vocabulary size
# ------------------------------------------------------------------------------------------------

BERT_V, BERT_D = 30522, 128  # bert-base-uncased vocabulary, FM-seq2seq's emb_dim


def brute_force_nearest(x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmin, squared-distance gap to the runner-up) of the direct float64 distances ‖x − E_k‖."""
    dist = torch.cdist(
        x.double()[None], emb.double()[None], compute_mode="donot_use_mm_for_euclid_dist"
    )[0]  # (N, V), differences taken element by element, no ‖E‖² − 2⟨E, x⟩ expansion
    two = dist.topk(2, dim=-1, largest=False)  # sorted: nearest first
    return two.indices[:, 0], two.values[:, 1].square() - two.values[:, 0].square()


def test_rounding_equals_brute_force_at_bert_vocab(monkeypatch):
    """V = 30,522, emb_dim 128, rows of varied norms; queries anywhere, near a row, on a row."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(BERT_V, BERT_D, generator=g) * (0.5 + torch.rand(BERT_V, 1, generator=g))
    pick = torch.randint(BERT_V, (200,), generator=g)
    x = torch.cat([
        torch.randn(200, BERT_D, generator=g) * 1.2,  # anywhere
        emb[pick] + 0.3 * torch.randn(200, BERT_D, generator=g),  # near a row
        emb[pick[:40]],  # exactly on a row
    ])  # (440, 128)
    brute, gap = brute_force_nearest(x, emb)
    # no near-tie: the float32 search has a margin of ~30× its rounding error (~1e-4 at |E|² ~ 256)
    assert gap.min().item() > 1e-3
    assert torch.equal(brute[-40:], pick[:40])
    assert torch.equal(nearest_tokens(x, emb), brute)
    # the block size changes nothing: ragged blocks of 7 positions, and a single one
    monkeypatch.setattr(embedding_fm, "ROUND_BLOCK", BERT_V * 7)
    assert torch.equal(nearest_tokens(x, emb), brute)
    monkeypatch.setattr(embedding_fm, "ROUND_BLOCK", 1)  # one position per block
    assert torch.equal(nearest_tokens(x[:50], emb), brute[:50])
    monkeypatch.setattr(embedding_fm, "ROUND_BLOCK", BERT_V * 10_000)  # everything at once
    assert torch.equal(nearest_tokens(x, emb), brute)


def test_rounding_ties_go_to_the_lowest_index(monkeypatch):
    """Exact ties resolve to the lowest index, as torch.argmin, at V = 30,522.

    Small-integer E and x make every product and partial sum exact in float32, so the computed
    objective has exactly the ties of the true distances whatever order the matmul sums in (with
    real-valued rows a BLAS may round the same dot product differently in different columns);
    the reference is the exact squared distance, its argmin the first minimal index.
    """
    g = torch.Generator().manual_seed(1)
    emb = torch.randint(-2, 3, (BERT_V, BERT_D), generator=g)  # (V, d) entries in {-2, …, 2}
    firsts = torch.tensor([3, 100, 4097, 20000])
    copies = torch.tensor([[17, 30521], [101, 15000], [4098, 30000], [20001, 30520]])
    for i, js in zip(firsts, copies, strict=True):
        emb[js] = emb[i].clone()  # the same row at several indices, incl. the last columns
    emb[7] = 0
    emb[7, :4] = torch.tensor([1, -1, 1, 1])  # the two smallest rows, E_29999 = −E_7
    emb[29999] = -emb[7]
    x = torch.cat([
        emb[firsts],  # exactly on a duplicated row
        emb[copies[:, 1]],  # on the later copy
        emb[firsts] + torch.randint(-1, 2, (4, BERT_D), generator=g),  # near it
        torch.zeros(1, BERT_D, dtype=torch.long),  # equidistant from E_7 and E_29999
        torch.randint(-2, 3, (300, BERT_D), generator=g),  # anywhere: many exact ties
    ])  # (313, d)
    xd, ed = x.double(), emb.double()
    # ‖x − E_k‖² of integers, exact in float64 (every partial sum is an integer far below 2⁵³)
    exact = xd.square().sum(-1, keepdim=True) + ed.square().sum(-1) - 2.0 * (xd @ ed.T)
    assert torch.equal(exact[:5], ((x[:5, None] - emb[None]) ** 2).sum(-1).double())
    expected = exact.argmin(-1)  # first minimal index
    assert torch.equal(expected[:8], torch.cat([firsts, firsts]))
    assert expected[12] == 7
    n_tied = ((exact == exact.min(-1, keepdim=True).values).sum(-1) > 1).sum().item()
    assert n_tied > 20  # ties are the rule here, not the exception
    xf, ef = x.float(), emb.float()
    assert torch.equal(nearest_tokens(xf, ef), expected)
    for rows in (1, 2, 3, 5, 7, 11, 64, 313):  # block sizes, ragged tails included
        monkeypatch.setattr(embedding_fm, "ROUND_BLOCK", BERT_V * rows)
        n = 313 if rows >= 64 else 40  # tiny matmuls are slow: the special rows and a few more
        assert torch.equal(nearest_tokens(xf[:n], ef), expected[:n]), rows


def test_rounding_edge_cases():
    """No positions, float64 / bf16 inputs, and autocast (the search stays float32)."""
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(1000, 16, generator=g)
    x = torch.randn(300, 16, generator=g)
    expected = (emb.square().sum(-1) - 2.0 * (x @ emb.T)).argmin(-1)
    empty = nearest_tokens(torch.empty(0, 16), emb)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    assert torch.equal(nearest_tokens(x.double(), emb.double()), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(nearest_tokens(x, emb), expected)
    xb = x.bfloat16()
    expected_b = (emb.square().sum(-1) - 2.0 * (xb.float() @ emb.T)).argmin(-1)
    assert torch.equal(nearest_tokens(xb, emb), expected_b)
    out = nearest_tokens(x[::2], emb)  # a strided view
    assert torch.equal(out, expected[::2])
