"""Hub files for offline compute nodes: which hub repositories the config's jobs read, and their
download into the project cache (``python -m repro.cluster fetch``, rule download_hub).

**Compute nodes are offline**: hub files (pretrained tokenizers, BERTScore models) are fetched by
the local rule ``download_hub`` into the project cache ``resources/hf/hub`` (:func:`fetch`);
every rule runs with :data:`OFFLINE_PREFIX` (hub offline, that cache), the download rules with
:data:`ONLINE` in front of their command.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repro.io import atomic_write_json
from repro.workflow import paths

#: the project's Hugging Face hub cache (relative to the working directory)
HF_CACHE = "resources/hf/hub"
#: every job's shell: strict bash, the hub offline, hub files read from the project cache, and a
#: fixed string-hash seed. The seed makes set orders reproducible: bert-score orders its sentences
#: with ``sorted(set(...), key=word count)``, so ties (sentences of equal length) land in batches of
#: different padded lengths from one run to the next and BERTScore moved by ~1e-8 between two runs
#: of the same job. The warm worker is keyed by the job's environment, so it starts with the seed.
OFFLINE_PREFIX = (
    "set -euo pipefail; export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "
    f'HF_HUB_CACHE="$PWD/{HF_CACHE}" PYTHONHASHSEED=0; '
)
#: in front of the download rules' commands (login node): the hub online again
ONLINE = "env HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 TRANSFORMERS_OFFLINE=0"


def _is_local(ident: str) -> bool:
    return (
        Path(ident).expanduser().exists()
        or ident.startswith(("/", "./", "../", "~"))
        or ident.endswith(".json")
    )


def hub_slug(repo_id: str, revision: str) -> str:
    """File-name form of ``repo_id@revision`` (``/`` becomes ``--``)."""
    return f"{repo_id.replace('/', '--')}@{revision}"


def hub_marker(repo_id: str, revision: str) -> str:
    """The manifest of a fetched repository: ``resources/hf/<org--name@revision>.json``."""
    return paths.hub_marker(hub_slug(repo_id, revision))


def bertscore_hub_model(cfg: Mapping[str, Any]) -> str | None:
    """The hub id a ``bertscore`` metric config loads (its ``model`` or the kind's default), or
    None when it needs no download: another kind, a local path, or a model the registry says is
    packaged (:func:`repro.metrics.packaged_models`)."""
    from repro.metrics import metric_options, packaged_models

    if cfg.get("kind") != "bertscore":
        return None
    model = cfg["model"] if "model" in cfg else metric_options("bertscore")["model"]
    if not isinstance(model, str) or model in packaged_models("bertscore") or _is_local(model):
        return None
    return model


def hub_repos(config: Mapping[str, Any]) -> dict[str, dict]:
    """Every hub repository some compute job reads: slug -> {id, revision, kind}.

    Pretrained tokenizers (``datasets.*.tokenizer.pretrained`` with a hub id; the tokenizer
    stage reads ``tokenizer.json`` at the pinned revision) and BERTScore models
    (``metrics.*`` of kind ``bertscore`` whose model is a hub id; bert-score loads the
    default branch). Local paths and the packaged MiniLM need nothing.
    """
    out: dict[str, dict] = {}
    for ds in config.get("datasets", {}).values():
        pre = _pretrained_tokenizer(ds)
        if pre is not None:
            out[hub_slug(*pre)] = {"id": pre[0], "revision": pre[1], "kind": "tokenizer"}
    for m in config.get("metrics", {}).values():
        model = bertscore_hub_model(m)
        if model is not None:
            out.setdefault(hub_slug(model, "main"), {"id": model, "revision": "main",
                                                     "kind": "model"})
    return out


def tokenizer_hub_inputs(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The hub marker the train_tokenizer job of ``dataset`` needs (none for trained ones)."""
    pre = _pretrained_tokenizer(config["datasets"][dataset])
    return [] if pre is None else [hub_marker(*pre)]


def _pretrained_tokenizer(dataset_cfg: Mapping[str, Any]) -> tuple[str, str] | None:
    """(hub id, revision) of a dataset's pretrained tokenizer on the hub; None for a trained
    tokenizer or a local path."""
    pre = (dataset_cfg.get("tokenizer") or {}).get("pretrained")
    if not pre or not isinstance(pre.get("id"), str) or _is_local(pre["id"]):
        return None
    return pre["id"], str(pre.get("revision") or "main")


def metric_hub_inputs(metrics_json: str) -> list[str]:
    """Hub markers of the BERTScore models a score job's metrics load."""
    models = (bertscore_hub_model(cfg) for cfg in json.loads(metrics_json).values())
    return sorted({hub_marker(m, "main") for m in models if m is not None})


def hub_pattern(config: Mapping[str, Any]) -> str:
    """Wildcard constraint of ``{hub}``: exactly the slugs of :func:`hub_repos`."""
    return "|".join(re.escape(s) for s in sorted(hub_repos(config))) or "^$"


#: files never fetched for a model: other frameworks' weights and exports
MODEL_IGNORE = ("*.msgpack", "*.h5", "*.ot", "*.onnx", "*.onnx_data", "*.tflite", "onnx/*",
                "coreml/*", "flax_model*", "tf_model*", "rust_model*", "*.mlmodel")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "config.json")


def fetch(repo_id: str, revision: str, kind: str, out: str | os.PathLike,
          cache_dir: str | os.PathLike = HF_CACHE) -> dict:
    """Download a hub repository's files into the project cache; write the marker ``out``.

    ``kind`` ``tokenizer`` fetches the tokenizer files only, ``model`` the whole snapshot but
    other frameworks' weights (and ``*.bin`` when safetensors exist). Jobs then load it with
    ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` pointing at ``cache_dir``.
    """
    from huggingface_hub import HfApi, snapshot_download

    if kind not in ("tokenizer", "model"):
        raise ValueError(f"kind must be tokenizer or model, got {kind!r}")
    if kind == "tokenizer":
        allow, ignore = list(TOKENIZER_FILES), None
    else:
        allow, ignore = None, list(MODEL_IGNORE)
        files = HfApi().list_repo_files(repo_id, revision=revision)
        if any(f.endswith(".safetensors") for f in files):
            ignore.append("*.bin")
    path = snapshot_download(repo_id=repo_id, revision=revision, cache_dir=str(cache_dir),
                             allow_patterns=allow, ignore_patterns=ignore)
    manifest = {
        "id": repo_id,
        "revision": revision,
        "kind": kind,
        "commit": Path(path).name,
        "files": sorted(str(p.relative_to(path)) for p in Path(path).rglob("*") if p.is_file()),
        "cache": str(cache_dir),
    }
    atomic_write_json(out, manifest)
    return manifest
