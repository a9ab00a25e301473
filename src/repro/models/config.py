"""The hyper-parameters of the shared :class:`~repro.models.Transformer`, validated on construction.

Which paper each option follows is told in :mod:`repro.models.transformer`; a method builds its
backbone's config with :meth:`TransformerConfig.from_model` from its ``model:`` block plus the
fields it fixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

PosEmb = Literal["learned", "rope", "sincos"]
InputKind = Literal["tokens", "vectors", "probs"]
OutputKind = Literal["logits", "vectors"]
Activation = Literal["gelu_tanh", "gelu", "relu2"]

_POS_EMBS = ("learned", "rope", "sincos")
_INPUTS = ("tokens", "vectors", "probs")
_OUTPUTS = ("logits", "vectors")
_ACTIVATIONS = ("gelu_tanh", "gelu", "relu2")


@dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of :class:`Transformer`; validated on construction.

    Attributes:
        vocab_size: V, size of the token vocabulary (used by ``input`` tokens/probs and
            ``output`` logits).
        seq_len: maximum sequence length (size of the position tables).
        d_model / n_layers / n_heads: width, depth, attention heads (``d_model % n_heads == 0``).
        mlp_ratio: MLP hidden width = ``round(mlp_ratio * d_model)``.
        dropout: dropout on the embedding sum, attention weights and both residual branches.
        causal: lower-triangular attention (AR) instead of bidirectional.
        time_cond: adaLN time conditioning; ``forward`` then requires ``t``.
        time_freq_dim: size of the sinusoidal timestep embedding (``[cos | sin]`` halves).
        time_dim: width of the time MLP and of ``c``; ``None`` means ``d_model``.
        time_max_period: longest sinusoid period of the timestep embedding.
        time_scale: t is multiplied by this before the sinusoid (DiffuSeq-style ``t·1000/T``).
        adaln_gate: adaLN-Zero gates + zero-initialised modulation (DiT) vs gate-free (FMS).
        adaln_silu: SiLU on ``c`` before each modulation Linear (DiT) or not (FMS).
        pos_emb: ``"learned"`` | ``"rope"`` | ``"sincos"``.
        rope_base: RoPE frequency base.
        input: ``"tokens"`` | ``"vectors"`` | ``"probs"``; ``d_in`` is required for vectors.
        output: ``"logits"`` | ``"vectors"``; ``d_out`` is required for vectors.
        tie_embeddings: share the token embedding with the logits head.
        zero_init_output: zero-initialise the output layer.
        activation: MLP non-linearity (``gelu_tanh`` DiT/FMS, ``gelu`` GPT-2, ``relu2`` KL-flow).
        bias: biases in the attention and MLP Linears.
        norm_eps: LayerNorm epsilon.
        init_std: standard deviation of the normal initialisation.
    """

    vocab_size: int
    seq_len: int
    d_model: int
    n_layers: int
    n_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    causal: bool = False
    time_cond: bool = False
    time_freq_dim: int = 256
    time_dim: int | None = None
    time_max_period: float = 10000.0
    time_scale: float = 1.0
    adaln_gate: bool = True
    adaln_silu: bool = True
    pos_emb: PosEmb = "rope"
    rope_base: float = 10000.0
    input: InputKind = "tokens"
    d_in: int | None = None
    output: OutputKind = "logits"
    d_out: int | None = None
    tie_embeddings: bool = False
    zero_init_output: bool = False
    activation: Activation = "gelu_tanh"
    bias: bool = True
    norm_eps: float = 1e-6
    init_std: float = 0.02

    @classmethod
    def from_model(
        cls,
        model: Mapping[str, Any],
        *,
        vocab_size: int,
        seq_len: int,
        where: str | None = None,
        **fixed: Any,
    ) -> TransformerConfig:
        """The backbone config of a method: the keys of its ``model:`` block ``model`` that are
        fields here (``d_model``, ``n_layers``, ``n_heads``, ``mlp_ratio``, ``dropout`` …) plus the
        fields the method fixes (``fixed``: ``causal``, ``input`` …); other keys of ``model`` are
        the method's own and ignored. A field may come from one side only (``TypeError``).

        With ``where`` (``"model config of method 'dfm'"``) an invalid value raises
        :class:`~repro.io.InputError` prefixed with it instead of ``ValueError``/``TypeError``.
        """
        names = {f.name for f in fields(cls)} - {"vocab_size", "seq_len"}
        given = {key: value for key, value in model.items() if key in names}
        both = sorted(set(given) & set(fixed))
        if both:
            raise TypeError(f"TransformerConfig.from_model: {both} both in the model and fixed")
        try:
            return cls(vocab_size=vocab_size, seq_len=seq_len, **given, **fixed)
        except (ValueError, TypeError) as err:
            if where is None:
                raise
            from repro.io import InputError

            raise InputError(f"{where}: {err}") from None

    def __post_init__(self) -> None:
        for key in ("vocab_size", "seq_len", "d_model", "n_layers", "n_heads", "time_freq_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TransformerConfig.{key} must be a positive int, got {value!r}")
        for key in (
            "mlp_ratio",
            "time_max_period",
            "time_scale",
            "rope_base",
            "norm_eps",
            "init_std",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(
                    f"TransformerConfig.{key} must be a positive number, got {value!r}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"TransformerConfig.d_model ({self.d_model}) must be divisible by n_heads "
                f"({self.n_heads})"
            )
        choices = {
            "pos_emb": _POS_EMBS,
            "input": _INPUTS,
            "output": _OUTPUTS,
            "activation": _ACTIVATIONS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"TransformerConfig.{key} = {getattr(self, key)!r}; choose one of {list(allowed)}"
                )
        if self.pos_emb == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError("pos_emb 'rope' needs an even head dimension d_model / n_heads")
        if self.pos_emb == "sincos" and self.d_model % 2:
            raise ValueError("pos_emb 'sincos' needs an even d_model")
        for kind, dim in (("input", "d_in"), ("output", "d_out")):
            value = getattr(self, dim)
            if getattr(self, kind) == "vectors":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(
                        f"TransformerConfig.{kind} = 'vectors' needs a positive int {dim}, "
                        f"got {value!r}"
                    )
            elif value is not None:
                raise ValueError(f"TransformerConfig.{dim} is only used with {kind} = 'vectors'")
        td = self.time_dim
        if td is not None and (isinstance(td, bool) or not isinstance(td, int) or td < 1):
            raise ValueError(
                f"TransformerConfig.time_dim must be a positive int or None, got {td!r}"
            )
        if self.tie_embeddings:
            if self.input != "tokens" or self.output != "logits":
                raise ValueError(
                    "TransformerConfig.tie_embeddings needs input = 'tokens' and output = 'logits'"
                )
            if self.zero_init_output:
                raise ValueError("tie_embeddings and zero_init_output would zero the embedding")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def c_dim(self) -> int:
        """Width of the time conditioning vector ``c``."""
        return self.time_dim if self.time_dim is not None else self.d_model
