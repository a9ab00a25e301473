"""The one transformer backbone shared by every method (AR, DiffuSeq, embedding FM, KL-flow, DFM).

A pre-norm transformer written top to bottom in the nanoGPT order (norm → attention → MLP → Block →
Transformer), with DiT's adaptive LayerNorm for time conditioning. The options are the fields of
:class:`~repro.models.config.TransformerConfig`; which paper each one follows:

* ``causal=True`` + ``pos_emb="rope"`` + tokens in / logits out: the autoregressive baseline of
  KL-flow (methods.md §3.6: "same backbone, causal, RoPE"); the KV cache makes AR decoding cost one
  position per step.
* ``time_cond=True``: DiT's adaLN (Peebles & Xie 2023, methods.md §2.3). A sinusoidal timestep
  embedding laid out ``[cos | sin]`` (DiT / FMS layout) of ``t * time_scale`` with a configurable
  ``time_max_period`` (FMS uses 100 on raw t ∈ [0, 1], DiT and KL-flow 10,000) feeds a
  Linear → SiLU → Linear MLP; its output ``c`` modulates every pre-norm LayerNorm (no affine
  parameters) as ``(1 + scale) * norm(x) + shift``. ``adaln_gate=True`` adds DiT's residual gates
  and zero-initialises every modulation layer (adaLN-Zero: each block starts as the identity);
  ``adaln_gate=False`` is FMS's gate-free AdaLN with a normally initialised modulation.
  ``adaln_silu`` applies DiT's SiLU to ``c`` before the modulation layers (FMS feeds ``c`` directly).
* ``pos_emb``: ``"learned"`` (GPT-2 / BERT absolute table), ``"rope"`` (rotary embedding of q and k,
  rotate-half convention, base ``rope_base``), ``"sincos"`` (fixed interleaved sin/cos table,
  temperature 10,000, as the FMS DiT).
* ``input``: ``"tokens"`` (embedding lookup), ``"vectors"`` (Linear(d_in → d) of continuous inputs,
  embedding-space methods), ``"probs"`` (bias-free Linear(V → d) of simplex vectors, KL-flow's
  ``FlowMatchingTransformer`` input, methods.md §3.4).
* ``output``: ``"logits"`` (bias-free Linear(d → V), optionally tied to the token embedding) or
  ``"vectors"`` (Linear(d → d_out), optionally zero-initialised as FMS's final Dense).

Initialisation (explicit, :meth:`Transformer.reset_parameters`): every Linear weight and every
Embedding ~ N(0, ``init_std``) (0.02, GPT-2 / DiT / KL-flow snapshot), every bias zero; then the
adaLN modulation layers are zeroed when ``adaln_gate`` (adaLN-Zero) and the output layer is zeroed
when ``zero_init_output``. Methods that need another scheme (e.g. FMS's LeCun-normal kernels)
re-initialise after construction.

Attention is :func:`torch.nn.functional.scaled_dot_product_attention`. Written from the papers and
the methods spec; no code is copied from the reference repositories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (unique: tied weights count once) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------------------------------------------
# KV cache
# ------------------------------------------------------------------------------------------------


@dataclass
class KVCache:
    """Per-layer key/value buffers (B, H, max_len, Dh) and the number of positions filled.

    Buffers are allocated on first use with the dtype and device of the keys (so autocast works).
    ``Transformer.forward(x_new, kv_cache=cache)`` writes the new keys at ``pos … pos + T_new``,
    attends over ``0 … pos + T_new`` and then advances ``pos``.
    """

    n_layers: int
    max_len: int
    pos: int = 0
    k: list[torch.Tensor | None] = field(default_factory=list, repr=False)
    v: list[torch.Tensor | None] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.k:
            self.k = [None] * self.n_layers
            self.v = [None] * self.n_layers

    def update(
        self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k_new``/``v_new`` (B, H, T_new, Dh) at ``pos``; return keys/values up to the end."""
        B, H, T, Dh = k_new.shape
        end = self.pos + T
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions > max_len {self.max_len}")
        if self.k[layer] is None:
            self.k[layer] = k_new.new_empty(B, H, self.max_len, Dh)  # (B, H, max_len, Dh)
            self.v[layer] = v_new.new_empty(B, H, self.max_len, Dh)
        k_buf, v_buf = self.k[layer], self.v[layer]
        if k_buf.shape[0] != B:
            raise ValueError(f"KV cache holds batch size {k_buf.shape[0]}, got {B}")
        k_buf[:, :, self.pos : end] = k_new
        v_buf[:, :, self.pos : end] = v_new
        return k_buf[:, :, :end], v_buf[:, :, :end]  # (B, H, pos + T_new, Dh)


# ------------------------------------------------------------------------------------------------
# Embedding layers
# ------------------------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """Sinusoidal embedding ``[cos | sin]`` of (B,) times → (B, dim), frequencies
    ``max_period^(-i / (dim/2))`` (DiT / ADM layout)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )  # (dim/2,)
    args = t.float()[:, None] * freqs[None]  # (B, dim/2)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * (dim/2))
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedder(nn.Module):
    """t (B,) → sinusoid of ``t * time_scale`` → Linear → SiLU → Linear → c (B, c_dim)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.freq_dim = cfg.time_freq_dim
        self.max_period = float(cfg.time_max_period)
        self.scale = float(cfg.time_scale)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.time_freq_dim, cfg.c_dim), nn.SiLU(), nn.Linear(cfg.c_dim, cfg.c_dim)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t * self.scale, self.freq_dim, self.max_period)  # (B, freq)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))  # (B, c_dim)


def sincos_table(n_pos: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Fixed 1-D position table (n_pos, dim), interleaved: [sin ω₀p, cos ω₀p, sin ω₁p, …]."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]  # (P, 1)
    omega = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    table = torch.zeros(n_pos, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * omega)
    table[:, 1::2] = torch.cos(pos * omega)
    return table.float()


def rope_tables(n_pos: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (n_pos, head_dim) for rotate-half RoPE (frequencies repeated for both halves)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (Dh/2,)
    angles = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv_freq[None]  # (P, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # (P, Dh)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys (last dim Dh) by the angles of their absolute positions; ``cos`` and
    ``sin`` broadcast against ``x`` ((T, Dh) for (B, H, T, Dh) inputs)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)  # (B, H, T, Dh)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


# ------------------------------------------------------------------------------------------------
# Transformer blocks
# ------------------------------------------------------------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: (B, T, D) normalised activations, (B, 1, D) shift/scale."""
    return x * (1 + scale) + shift


class SelfAttention(nn.Module):
    """Multi-head self-attention via SDPA; causal or bidirectional; optional RoPE and KV cache."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.causal = cfg.causal
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        kv_cache: KVCache | None,
        layer: int,
    ) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim)
        if rope is None:
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, Dh)
        else:
            # queries and keys rotated in one pass over their (B, T, 2, H, Dh) slice: the same
            # elementwise arithmetic as rotating each, in half the operations
            cos, sin = (table[:, None, None, :] for table in rope)  # (T, 1, 1, Dh)
            q, k = apply_rope(qkv[:, :, :2], cos, sin).permute(2, 0, 3, 1, 4)
            v = qkv[:, :, 2].transpose(1, 2)  # (B, H, T, Dh)
        mask, is_causal = None, self.causal
        if kv_cache is not None:
            offset = kv_cache.pos
            k, v = kv_cache.update(layer, k, v)  # (B, H, offset + T, Dh)
            if offset > 0:
                # Query i sits at absolute position offset + i and sees keys 0 … offset + i. A
                # single new query sees the whole cache, so it needs no mask at all.
                is_causal = False
                if T > 1:
                    mask = torch.ones(T, offset + T, dtype=torch.bool, device=x.device)
                    mask = mask.tril(diagonal=offset)  # (T, offset + T)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        hidden = round(cfg.mlp_ratio * cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        self.proj = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.activation = cfg.activation
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)  # (B, T, hidden)
        if self.activation == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        elif self.activation == "gelu":
            h = F.gelu(h)
        else:  # relu2: ReLU(x)^2 (modded-nanoGPT / KL-flow snapshot)
            h = F.relu(h).square()
        return self.drop(self.proj(h))  # (B, T, D)


class AdaLNModulation(nn.Module):
    """c (B, c_dim) → ``n_chunks`` tensors (B, 1, D): [shift, scale(, gate)] per sub-layer."""

    def __init__(self, cfg: TransformerConfig, n_chunks: int) -> None:
        super().__init__()
        self.n_chunks = n_chunks
        self.silu = cfg.adaln_silu
        self.linear = nn.Linear(cfg.c_dim, n_chunks * cfg.d_model)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = F.silu(c) if self.silu else c
        return self.linear(h).unsqueeze(1).chunk(self.n_chunks, dim=-1)  # n × (B, 1, D)


class Block(nn.Module):
    """Pre-norm block: x += attn(norm(x)); x += mlp(norm(x)), adaLN-modulated when time_cond."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        affine = not cfg.time_cond  # adaLN replaces the LayerNorm's own affine parameters
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, elementwise_affine=affine)
        self.attn = SelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, elementwise_affine=affine)
        self.mlp = MLP(cfg)
        self.gated = cfg.adaln_gate
        self.modulation = (
            AdaLNModulation(cfg, 6 if cfg.adaln_gate else 4) if cfg.time_cond else None
        )

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        kv_cache: KVCache | None,
        layer: int,
    ) -> torch.Tensor:
        if self.modulation is None:
            x = x + self.attn(self.norm1(x), rope, kv_cache, layer)
            return x + self.mlp(self.norm2(x))  # (B, T, D)
        mods = self.modulation(c)
        if self.gated:
            shift1, scale1, gate1, shift2, scale2, gate2 = mods
        else:
            (shift1, scale1, shift2, scale2), gate1, gate2 = mods, 1.0, 1.0
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), rope, kv_cache, layer)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))  # (B, T, D)


class FinalLayer(nn.Module):
    """Final (ada)LayerNorm and output projection to logits (V) or vectors (d_out)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        affine = not cfg.time_cond
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, elementwise_affine=affine)
        self.modulation = AdaLNModulation(cfg, 2) if cfg.time_cond else None
        if cfg.output == "logits":
            self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        else:
            self.head = nn.Linear(cfg.d_model, cfg.d_out)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(x)
        if self.modulation is not None:
            shift, scale = self.modulation(c)
            h = modulate(h, shift, scale)
        return self.head(h)  # (B, T, V | d_out)


# ------------------------------------------------------------------------------------------------
# Core model
# ------------------------------------------------------------------------------------------------


class Transformer(nn.Module):
    """The shared backbone; see the module docstring for what each config option follows."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(cfg, TransformerConfig):
            raise TypeError(f"Transformer expects a TransformerConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        d = cfg.d_model
        if cfg.input == "tokens":
            self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        elif cfg.input == "vectors":
            self.in_proj = nn.Linear(cfg.d_in, d)
        else:  # probs: KL-flow's bias-free "embedding" of the simplex vector
            self.in_proj = nn.Linear(cfg.vocab_size, d, bias=False)
        if cfg.pos_emb == "learned":
            self.pos_emb = nn.Embedding(cfg.seq_len, d)
        elif cfg.pos_emb == "sincos":
            # Fixed tables are non-persistent buffers: not in the state_dict, rebuilt from cfg.
            self.register_buffer("pos_table", sincos_table(cfg.seq_len, d), persistent=False)
        else:
            cos, sin = rope_tables(cfg.seq_len, cfg.head_dim, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)  # (seq_len, Dh)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.time_embed = TimestepEmbedder(cfg) if cfg.time_cond else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final = FinalLayer(cfg)
        if cfg.tie_embeddings:
            self.final.head.weight = self.tok_emb.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, init_std) Linear/Embedding weights, zero biases; adaLN-Zero and zero-output."""
        std = self.cfg.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        if self.cfg.time_cond and self.cfg.adaln_gate:
            for module in self.modules():
                if isinstance(module, AdaLNModulation):
                    nn.init.zeros_(module.linear.weight)
                    nn.init.zeros_(module.linear.bias)
        if self.cfg.zero_init_output:
            nn.init.zeros_(self.final.head.weight)
            if self.final.head.bias is not None:
                nn.init.zeros_(self.final.head.bias)

    def new_kv_cache(self, max_len: int | None = None) -> KVCache:
        """An empty cache for incremental causal decoding of up to ``max_len`` positions."""
        if not self.cfg.causal:
            raise ValueError(
                "a KV cache needs a causal Transformer (TransformerConfig.causal=True)"
            )
        max_len = self.cfg.seq_len if max_len is None else max_len
        if not 1 <= max_len <= self.cfg.seq_len:
            raise ValueError(f"KV cache max_len must be in [1, seq_len={self.cfg.seq_len}]")
        return KVCache(n_layers=self.cfg.n_layers, max_len=max_len)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.input == "tokens":
            if x.dim() != 2 or x.dtype not in (torch.int64, torch.int32):
                raise ValueError(
                    f"input 'tokens' expects (B, T) integer ids, got {x.dtype} {tuple(x.shape)}"
                )
            return self.tok_emb(x)  # (B, T, D)
        width = cfg.d_in if cfg.input == "vectors" else cfg.vocab_size
        if x.dim() != 3 or x.shape[-1] != width or not x.is_floating_point():
            raise ValueError(
                f"input {cfg.input!r} expects (B, T, {width}) floats, got {x.dtype} {tuple(x.shape)}"
            )
        return self.in_proj(x.to(self.in_proj.weight.dtype))  # (B, T, D)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float | None = None,
        kv_cache: KVCache | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Run the network.

        Args:
            x: (B, T) int ids (input ``tokens``), (B, T, d_in) vectors, or (B, T, V) probabilities.
            t: (B,) or scalar time in the method's own units; required iff ``time_cond``.
            kv_cache: causal models only: ``x`` holds the positions ``cache.pos … cache.pos + T - 1``
                (absolute offsets for the position embedding); they attend over the cache, which is
                advanced by T.
            last_only: return only the last position's output (saves the (B, T, V) head on prefill).

        Returns:
            (B, T, V) logits or (B, T, d_out) vectors ((B, 1, ·) with ``last_only``).
        """
        cfg = self.cfg
        h = self._embed(x)  # (B, T, D)
        B, T, _ = h.shape
        offset = 0 if kv_cache is None else kv_cache.pos
        if kv_cache is not None and not cfg.causal:
            raise ValueError("kv_cache is only valid for a causal Transformer")
        if offset + T > cfg.seq_len:
            raise ValueError(f"positions {offset}…{offset + T - 1} exceed seq_len {cfg.seq_len}")
        rope = None
        if cfg.pos_emb == "learned":
            positions = torch.arange(offset, offset + T, device=h.device)  # (T,) absolute
            h = h + self.pos_emb(positions)  # (B, T, D) + (T, D)
        elif cfg.pos_emb == "sincos":
            h = h + self.pos_table[offset : offset + T].to(h.dtype)
        else:
            rope = (self.rope_cos[offset : offset + T], self.rope_sin[offset : offset + T])
        c = self._time(t, B, h.device)  # (B, c_dim) or None
        h = self.drop(h)
        for layer, block in enumerate(self.blocks):
            h = block(h, c, rope, kv_cache, layer)  # (B, T, D)
        if kv_cache is not None:
            kv_cache.pos += T
        if last_only:
            h = h[:, -1:]  # (B, 1, D)
        return self.final(h, c)

    def _time(
        self, t: torch.Tensor | float | None, batch: int, device: torch.device
    ) -> torch.Tensor | None:
        if self.time_embed is None:
            if t is not None:
                raise ValueError("t was given but TransformerConfig.time_cond is False")
            return None
        if t is None:
            raise ValueError("this Transformer is time-conditioned (time_cond=True): pass t")
        t = torch.as_tensor(t, dtype=torch.float32, device=device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be a scalar or of shape ({batch},), got {tuple(t.shape)}")
        return self.time_embed(t)  # (B, c_dim)
