"""Judge-model metrics: generative perplexity (three papers' aggregations) and KL-flow's entropy.

A *judge* is a causal LM with its tokenizer, loaded by :func:`load_judge` with ``AutoTokenizer`` and
``AutoModelForCausalLM`` from a local directory (``local_files_only``; made by ``python -m
repro.judge train`` or ``download``) or, when no such directory exists, from a hub id (cache or
network). A tokenizer without a pad token gets pad = EOS (GPT-2). Every hypothesis is re-tokenised
with the judge's tokenizer (``add_special_tokens=False``; ``add_bos`` prepends the judge's BOS) and
truncated to ``max_length`` judge tokens (default: the judge's context, ``max_position_embeddings``
/ ``n_positions``). Scoring: batched forward passes (sequences sorted by length, right-padded with
an attention mask — a causal judge's scores of the real positions do not depend on the padding, so
per-sample numbers do not depend on ``batch_size``), NLL_j = −log p(token_j | tokens_<j) for j ≥ 1
(the first token of a sequence is never scored), log-softmax in fp32 under ``torch.inference_mode``.

``gen_ppl`` aggregations (docs/methods.md §5.4):

* ``corpus_exp_mean_nll`` (MDLM ``compute_generative_perplexity``): each sequence is split into
  chunks of the judge's context (each chunk is a separate forward pass whose first token is
  unscored); token weights = every non-EOS target plus the first EOS of the chunk; value =
  exp(Σ w·NLL / Σ w) over all tokens of all samples. ``per_example`` holds each sample's weighted
  NLL sum in nats (not a perplexity) and ``details["per_example_tokens"]`` its Σ w, so the corpus
  value can be re-aggregated across files. Two MDLM quirks are not reproduced: MDLM pads with EOS
  to the longest text of its batch and thereby scores one pad EOS of each shorter text (a
  batch-dependent number), and it drops the last ``n mod batch_size`` samples.
* ``mean_per_sample_ppl`` (SEDD, the flow_matching text example): chunked as above, every target
  scored (EOS included); per sample exp(mean NLL); value = mean over samples.
* ``klflow_padded`` (KL-flow ``Eval_utils.py``): each text truncated (never chunked) to
  ``max_length`` and padded to it with EOS; per text torchmetrics-style perplexity with every EOS
  target ignored (pads and EOS tokens alike); value = mean of the per-text perplexities. Right
  padding changes no scored logit of a causal judge and the pad targets are ignored, so the pads are
  not run through the judge (the numbers are those of the padded computation; the tests check
  that). ``max_length`` must not exceed the judge's context; set it to the generation length, as
  KL-flow does.

``judge_entropy`` (KL-flow): per text, the unigram entropy of the judge-token sequence truncated and
EOS-padded to ``max_length`` (the pads count as a symbol), in nats (``base`` "e") or bits ("2");
value = mean over texts. ``judge`` may be a list: KL-flow averages each text's entropy over its four
judges' tokenisations. Only the tokenizer (and the model config, for the default ``max_length``) is
loaded.

Samples whose hypothesis is empty or yields no scored token are ``None`` (left out of means; KL-flow
drops empty generations before scoring). *Empty* is the one rule of every text metric
(:func:`repro.metrics.text.is_empty`): no non-whitespace character, so a whitespace-only hypothesis
is ``None`` here too, as it is empty for BLEU, ROUGE-L and BERTScore (bert-score, KL-flow's
BERTScore, scores a blank candidate as empty; the judge would otherwise score bare spaces). ``precision`` "bf16_autocast" runs the judge under
``torch.autocast(bfloat16)`` (meant for CUDA: faster, numbers differ in the ~3rd digit); the default
"fp32" keeps numbers reproducible across devices up to float rounding.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from repro.io import InputError, OptionError
from repro.metrics.base import (
    MetricResult,
    check_choice,
    check_positive_int,
    mean_defined,
    metric,
    package_version,
)
from repro.metrics.text import is_empty

__all__ = [
    "AGGREGATIONS",
    "Judge",
    "gen_ppl",
    "judge_entropy",
    "load_judge",
    "load_judge_tokenizer",
]

AGGREGATIONS = ("corpus_exp_mean_nll", "mean_per_sample_ppl", "klflow_padded")
PRECISIONS = ("fp32", "bf16_autocast")
_DTYPES = ("float32", "bfloat16", "float16")

_AGGREGATION_TEXT = {
    "corpus_exp_mean_nll": "exp(sum NLL / sum tokens) over all samples, weights non-EOS + first "
    "EOS per context chunk, first token unscored (MDLM)",
    "mean_per_sample_ppl": "mean over samples of exp(mean NLL), all targets, context chunks, "
    "first token unscored (SEDD / flow_matching)",
    "klflow_padded": "mean over texts of exp(mean NLL), text truncated + EOS-padded to "
    "max_length, EOS targets ignored (KL-flow)",
}


# --- loading ------------------------------------------------------------------------------------


def _resolve(path_or_id: str) -> tuple[str, bool]:
    """``(source, local)``: an existing directory is local; a path-like string must exist."""
    if not isinstance(path_or_id, str) or not path_or_id:
        raise InputError(
            f"judge must be a local judge directory or a hub model id, got {path_or_id!r}"
        )
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return str(p), True
    if p.exists():
        raise InputError(f"judge {path_or_id!r} is a file; give the judge's directory")
    if path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") > 1:
        raise InputError(
            f"judge directory {path_or_id!r} not found; make it with `python -m repro.judge train` "
            "(smoke judge) or `python -m repro.judge download --id ID --revision SHA --out DIR`"
        )
    return path_or_id, False


def _hub_error(source: str, err: Exception) -> InputError:
    return InputError(
        f"judge {source!r}: no such local directory, and loading it as a hub model id failed "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Offline? Download "
        f"it on a machine with network access (`python -m repro.judge download --id {source} "
        "--revision SHA --out resources/judges/NAME`) and point the metric's judge option at "
        "that directory"
    )


def _context(config: Any, tokenizer: Any, source: str) -> int:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 1_000_000:
        return value
    raise InputError(f"judge {source!r}: cannot tell its context length from config.json")


def _check_causal_lm(config: Any, source: str) -> None:
    """The judge must be a causal LM: ``AutoModelForCausalLM`` would otherwise build a model with
    freshly initialised layers (a BERT checkpoint gives a random LM head) and score garbage."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    archs = list(getattr(config, "architectures", None) or [])
    if not any(a in causal for a in archs):
        have = f"architectures {archs}" if archs else "no 'architectures' entry"
        raise InputError(
            f"judge {source!r} is not a causal language model: its config.json has {have} "
            f"(model_type {getattr(config, 'model_type', None)!r}); a judge must be saved from a "
            "causal-LM class (e.g. GPT2LMHeadModel, LlamaForCausalLM)"
        )


@functools.lru_cache(maxsize=8)
def _load_tokenizer(source: str, local: bool, revision: str | None) -> tuple[Any, int]:
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, local_files_only=local)
        config = AutoConfig.from_pretrained(source, revision=revision, local_files_only=local)
    except (OSError, ValueError) as err:
        if local:
            raise InputError(
                f"judge directory {source!r}: cannot load its tokenizer/config ({err}); it needs "
                "config.json and tokenizer files (remake it with `python -m repro.judge`)"
            ) from None
        raise _hub_error(source, err) from None
    _check_causal_lm(config, source)
    if tokenizer.eos_token_id is None:
        raise InputError(f"judge {source!r}: its tokenizer has no EOS token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has none: pad = EOS (MDLM, KL-flow)
    return tokenizer, _context(config, tokenizer, source)


def load_judge_tokenizer(path_or_id: str, *, revision: str | None = None) -> tuple[Any, int]:
    """The judge's tokenizer (pad = EOS if it has none) and its context length."""
    source, local = _resolve(path_or_id)
    return _load_tokenizer(source, local, revision)


@dataclass
class Judge:
    """A loaded judge: tokenizer, causal LM (eval mode) and where/how it runs."""

    name: str
    source: str
    revision: str | None
    tokenizer: Any
    model: Any
    device: Any
    dtype: Any
    context: int

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def encode(self, texts: Sequence[str], *, add_bos: bool = False) -> list[list[int]]:
        return encode(self.tokenizer, texts, add_bos=add_bos, name=self.name)

    def token_nlls(
        self, seqs: Sequence[Sequence[int]], *, batch_size: int = 8, precision: str = "fp32"
    ) -> list[np.ndarray]:
        """NLL (nats, float64) of tokens 1..n−1 of each sequence given its prefix.

        Sequences are sorted by length, batched, right-padded with an attention mask and run in
        one forward pass per batch; each must fit the context.
        """
        import torch
        import torch.nn.functional as F

        out: list[np.ndarray] = [np.zeros(0) for _ in seqs]
        todo = sorted((i for i, s in enumerate(seqs) if len(s) >= 2), key=lambda i: -len(seqs[i]))
        if any(len(seqs[i]) > self.context for i in todo):
            raise ValueError(f"a sequence exceeds the judge's context ({self.context})")
        if precision == "bf16_autocast":
            autocast: Any = torch.autocast(self.device.type, dtype=torch.bfloat16)
        else:
            autocast = contextlib.nullcontext()
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                rows = todo[start : start + batch_size]
                width = len(seqs[rows[0]])
                ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    ids[r, : len(seqs[i])] = torch.as_tensor(seqs[i], dtype=torch.long)
                    mask[r, : len(seqs[i])] = 1
                ids, mask = ids.to(self.device), mask.to(self.device)
                with autocast:
                    logits = self.model(input_ids=ids, attention_mask=mask).logits
                logits = logits[:, :-1].float()
                nll = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
                ).view(len(rows), width - 1)
                nll = nll.double().cpu().numpy()
                for r, i in enumerate(rows):
                    out[i] = nll[r, : len(seqs[i]) - 1].copy()
        return out


def _device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available here; use 'auto' or 'cpu'")
    return dev


@functools.lru_cache(maxsize=1)  # one judge in memory at a time (7B judges are large)
def _load_model(source: str, local: bool, revision: str | None, device: str, dtype: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            source, revision=revision, local_files_only=local, dtype=getattr(torch, dtype),
            output_loading_info=True,
        )
    except (OSError, ValueError) as err:
        if local:
            raise InputError(
                f"judge directory {source!r}: cannot load a causal LM from it ({err}); it needs "
                "config.json and the weights (remake it with `python -m repro.judge`)"
            ) from None
        raise _hub_error(source, err) from None
    # weights the checkpoint lacks are freshly initialised by transformers: a random judge
    missing = [*info.get("missing_keys", ()), *(k for k, *_ in info.get("mismatched_keys", ()))]
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (", …" if len(missing) > 5 else "")
        raise InputError(
            f"judge {source!r}: its checkpoint lacks {len(missing)} weight(s) of the causal LM "
            f"({shown}), which would be newly initialised at random; give a complete causal-LM "
            "checkpoint"
        )
    return model.to(torch.device(device)).eval()


def load_judge(
    path_or_id: str,
    *,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
) -> Judge:
    """Load a judge from a local directory (``local_files_only``) or a hub id.

    ``device`` "auto" is CUDA when available, else CPU; ``dtype`` is the weights' dtype
    ("float32", "bfloat16" or "float16"). The last loaded model is cached.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if dtype not in _DTYPES:
        raise InputError(f"judge dtype {dtype!r}: use one of {', '.join(_DTYPES)}")
    dev = _device(device)
    source, local = _resolve(path_or_id)
    tokenizer, context = _load_tokenizer(source, local, revision)
    model = _load_model(source, local, revision, str(dev), dtype)
    return Judge(path_or_id, source, revision, tokenizer, model, dev, dtype, context)


def encode(
    tokenizer: Any, texts: Sequence[str], *, add_bos: bool = False, name: str = "judge"
) -> list[list[int]]:
    """Judge token ids of ``texts`` (no special tokens; ``add_bos`` prepends the BOS)."""
    ids = (
        tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        if texts
        else []
    )
    if add_bos:
        bos = tokenizer.bos_token_id
        if bos is None:
            raise InputError(f"judge {name!r}: add_bos is true but its tokenizer has no BOS token")
        ids = [[bos, *x] for x in ids]
    return [list(x) for x in ids]


# --- gen_ppl ------------------------------------------------------------------------------------


def _chunks(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)] or [[]]


def _corpus_weights(chunk: np.ndarray, eos: int) -> np.ndarray:
    """MDLM's weights of targets 1..n−1 of ``chunk``: non-EOS, plus the chunk's first EOS."""
    is_eos = chunk == eos
    first = is_eos & (np.cumsum(is_eos) == 1)
    return (~is_eos | first)[1:].astype(np.float64)


def _check_judge_opts(kind: str, judge: Any, max_length: Any, batch_size: Any) -> None:
    if judge is None:
        raise OptionError(
            "judge",
            f"metric kind {kind!r}: option judge is required (a local judge directory, e.g. "
            "results/judges/NAME, or a hub model id)"
        )
    if max_length is not None:
        check_positive_int(kind, "max_length", max_length)
    check_positive_int(kind, "batch_size", batch_size)


def check_gen_ppl_options(
    judge: Any, aggregation: Any, max_length: Any, batch_size: Any, add_bos: Any, precision: Any
) -> None:
    """gen_ppl's options, checked before any judge is loaded (and by the workflow at DAG build)."""
    kind = "gen_ppl"
    _check_judge_opts(kind, judge, max_length, batch_size)
    if aggregation is None:
        raise OptionError(
            "aggregation",
            f"metric kind {kind!r}: option aggregation is required, one of "
            f"{', '.join(repr(a) for a in AGGREGATIONS)} (docs/methods.md §5.4)",
        )
    check_choice(kind, "aggregation", aggregation, AGGREGATIONS)
    check_choice(kind, "precision", precision, PRECISIONS)
    if not isinstance(add_bos, bool):
        raise OptionError("add_bos", f"metric kind {kind!r}: option add_bos must be true or false")


def check_judge_entropy_options(judge: Any, max_length: Any, base: Any) -> list[str]:
    """judge_entropy's options (as for :func:`check_gen_ppl_options`) -> the list of judges."""
    kind = "judge_entropy"
    _check_judge_opts(kind, judge, max_length, 1)
    check_choice(kind, "base", base, ("e", "2"))
    judges = [judge] if isinstance(judge, str) else judge
    if not isinstance(judges, list) or not judges or not all(isinstance(j, str) for j in judges):
        raise OptionError(
            "judge",
            f"metric kind {kind!r}: option judge must be a judge directory / hub id or a "
            f"non-empty list of them, got {judge!r}",
        )
    return judges


def check_max_length(aggregation: str, max_length: int | None, context: int, judge: str) -> int:
    """gen_ppl's length L: ``max_length``, default the judge's ``context``; klflow_padded truncates
    to L and pads, so L must fit the context (the workflow checks this at DAG build too)."""
    L = context if max_length is None else max_length
    if aggregation == "klflow_padded" and context < L:
        raise OptionError(
            "max_length",
            f"metric kind 'gen_ppl': max_length {L} exceeds the context ({context}) of judge "
            f"{judge!r}; klflow_padded truncates, it does not chunk: lower max_length",
        )
    return L


def context_from_config(config: dict, judge: str) -> int:
    """The context length a judge's ``config.json`` (a dict) states, as :func:`load_judge` reads it."""
    from types import SimpleNamespace

    return _context(SimpleNamespace(**config), None, judge)


def _per_example_ppl(
    texts: list[str],
    per_chunks: list[list[list[int]]],
    nll_flat: list[np.ndarray],
    aggregation: str,
    eos: int,
) -> tuple[list[float | None], list[int]]:
    """Each text's perplexity (its weighted NLL sum for ``corpus_exp_mean_nll``; None for an
    empty text or one with no scored token) and its scored-token weight, from the per-chunk
    token NLLs ``nll_flat`` (the chunks of every text in order) weighted as ``aggregation`` says."""
    per_example: list[float | None] = []
    tokens: list[int] = []
    pos = 0
    for text, chunks in zip(texts, per_chunks):
        nll_sum, weight = 0.0, 0.0
        for chunk in chunks:
            nll = nll_flat[pos]
            pos += 1
            arr = np.asarray(chunk, dtype=np.int64)
            if aggregation == "corpus_exp_mean_nll":
                w = _corpus_weights(arr, eos)
            elif aggregation == "klflow_padded":
                w = (arr[1:] != eos).astype(np.float64)
            else:
                w = np.ones(len(nll))
            nll_sum += math.fsum(nll * w)
            weight += float(w.sum())
        tokens.append(int(weight))
        if is_empty(text) or weight == 0:
            per_example.append(None)
        elif aggregation == "corpus_exp_mean_nll":
            per_example.append(nll_sum)
        else:
            per_example.append(math.exp(nll_sum / weight))
    return per_example, tokens


@metric("gen_ppl", fields=("hypothesis",), gpu=True)
def gen_ppl(
    samples: Sequence[dict],
    *,
    judge: str | None = None,
    aggregation: str | None = None,
    max_length: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    add_bos: bool = False,
    precision: str = "fp32",
    revision: str | None = None,
) -> MetricResult:
    """Generative perplexity of the hypotheses under a judge LM (see the module docstring).

    ``judge`` and ``aggregation`` are required; ``max_length`` defaults to the judge's context.
    """
    check_gen_ppl_options(judge, aggregation, max_length, batch_size, add_bos, precision)

    jd = load_judge(judge, revision=revision, device=device)
    C = jd.context
    L = check_max_length(aggregation, max_length, C, judge)
    texts = [s["hypothesis"] for s in samples]
    encoded = jd.encode(texts, add_bos=add_bos)
    n_truncated = sum(len(x) > L for x in encoded)
    encoded = [x[:L] for x in encoded]
    eos = jd.eos_id

    per_chunks = [_chunks(x, C) for x in encoded]
    flat = [c for chunks in per_chunks for c in chunks]
    nll_flat = jd.token_nlls(flat, batch_size=batch_size, precision=precision)

    per_example, tokens = _per_example_ppl(texts, per_chunks, nll_flat, aggregation, eos)
    total_tokens = sum(t for t, v in zip(tokens, per_example) if v is not None)
    if aggregation == "corpus_exp_mean_nll":
        defined = [v for v in per_example if v is not None]
        value = math.exp(math.fsum(defined) / total_tokens) if total_tokens else None
    else:
        value = mean_defined(per_example)

    variant = (
        f"gen_ppl {aggregation}: {_AGGREGATION_TEXT[aggregation]}; judge {judge}"
        f"{'@' + revision if revision else ''} (context {C}), max_length {L}, "
        f"add_bos {str(add_bos).lower()}, {precision}; transformers-{package_version('transformers')}"
    )
    details: dict[str, Any] = {
        "aggregation": aggregation,
        "judge": judge,
        "judge_source": jd.source,
        "revision": revision,
        "context": C,
        "max_length": L,
        "add_bos": add_bos,
        "precision": precision,
        "device": str(jd.device),
        "batch_size": batch_size,
        "eos_id": eos,
        "n_samples": len(texts),
        "n_undefined": sum(v is None for v in per_example),
        "n_truncated": n_truncated,
        "n_chunked": sum(len(c) > 1 for c in per_chunks) if aggregation != "klflow_padded" else 0,
        "n_judge_tokens": sum(len(x) for x in encoded),
        "n_scored_tokens": total_tokens,
        "per_example_tokens": tokens,
        "per_example_unit": (
            "weighted NLL sum (nats); value = exp(sum / sum per_example_tokens)"
            if aggregation == "corpus_exp_mean_nll"
            else "perplexity"
        ),
    }
    return MetricResult(value, variant, per_example, details)


# --- judge_entropy ------------------------------------------------------------------------------


def padded_entropy(seqs: Sequence[Sequence[int]], length: int, pad: int, base: str) -> np.ndarray:
    """Unigram entropy of each sequence truncated and ``pad``-padded to ``length`` (vectorised)."""
    import torch

    n = len(seqs)
    if n == 0:
        return np.zeros(0)
    ids = torch.full((n, length), pad, dtype=torch.long)
    for r, s in enumerate(seqs):
        s = list(s)[:length]
        if s:
            ids[r, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    span = int(ids.max()) + 1
    keys = torch.arange(n).unsqueeze(1) * span + ids
    uniq, counts = torch.unique(keys.reshape(-1), return_counts=True)
    p = counts.double() / length
    terms = -p * torch.log(p)
    ent = torch.zeros(n, dtype=torch.float64).index_add_(0, uniq // span, terms)
    if base == "2":
        ent = ent / math.log(2)
    return ent.clamp_min(0.0).numpy()


@metric("judge_entropy", fields=("hypothesis",), gpu=True)
def judge_entropy(
    samples: Sequence[dict],
    *,
    judge: str | list[str] | None = None,
    max_length: int | None = None,
    base: str = "e",
    add_bos: bool = False,
    revision: str | None = None,
) -> MetricResult:
    """KL-flow's entropy: unigram entropy of the EOS-padded judge tokens of each text, averaged.

    ``judge`` is one judge or a list (each text's entropy is then averaged over the judges, as
    KL-flow averages over its four); ``max_length`` (default: each judge's context) should be the
    generation length, as in KL-flow; ``base`` "e" = nats (KL-flow), "2" = bits.
    """
    judges = check_judge_entropy_options(judge, max_length, base)
    texts = [s["hypothesis"] for s in samples]
    per_judge, lengths = [], []
    for name in judges:
        tokenizer, context = load_judge_tokenizer(name, revision=revision)
        L = context if max_length is None else max_length
        lengths.append(L)
        ids = encode(tokenizer, texts, add_bos=add_bos, name=name)
        per_judge.append(padded_entropy(ids, L, int(tokenizer.eos_token_id), base))
    mean = np.mean(np.stack(per_judge), axis=0) if texts else np.zeros(0)
    per_example: list[float | None] = [
        None if is_empty(text) else float(v) for v, text in zip(mean, texts)
    ]
    unit = "nats" if base == "e" else "bits"
    variant = (
        f"judge_entropy: unigram entropy ({unit}) of the judge tokens truncated + EOS-padded to "
        f"max_length (pads count), mean over texts (KL-flow); judge {', '.join(judges)}"
        f"{'@' + revision if revision else ''}, max_length {', '.join(map(str, lengths))}, "
        f"add_bos {str(add_bos).lower()}; transformers-{package_version('transformers')}"
    )
    details = {
        "judges": judges,
        "revision": revision,
        "max_length": lengths,
        "base": base,
        "add_bos": add_bos,
        "n_samples": len(texts),
        "n_undefined": sum(v is None for v in per_example),
        "per_judge_value": [
            mean_defined(None if is_empty(t) else float(v) for v, t in zip(arr, texts))
            for arr in per_judge
        ],
    }
    return MetricResult.of_examples(per_example, variant, details)
