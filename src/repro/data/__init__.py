"""The datasets stage: registry of real datasets (hub + local files), synthetic stand-ins, and
normalisation to the row schema of docs/architecture.md.

Modules: :mod:`.registry` (hub ids, pinned revisions, default splits), :mod:`.config` (the
dataset sub-config), :mod:`.normalise` (row schema, per-source field mappers),
:mod:`.synthetic` (generators), :mod:`.hub` (local files, saved copies, download),
:mod:`.prepare` and :mod:`.download` (stage entry points, ``python -m repro.data.<stage>``).
"""

from __future__ import annotations

from .config import DATA_KEYS, DataConfig, data_subconfig, parse_config
from .normalise import TASK_FIELDS, validate_rows
from .registry import LOADERS, SPLITS
from .synthetic import GENERATORS, generate

__all__ = [
    "DATA_KEYS",
    "GENERATORS",
    "LOADERS",
    "SPLITS",
    "TASK_FIELDS",
    "DataConfig",
    "data_subconfig",
    "generate",
    "load_split",
    "needs_download",
    "parse_config",
    "prepare_dataset",
    "validate_rows",
]

_LAZY = {"load_split", "needs_download", "prepare_dataset"}


def __getattr__(name: str):
    # imported on first use so that `python -m repro.data.prepare` does not import the module
    # twice (once via this package, once as __main__), which makes runpy warn
    if name in _LAZY:
        from . import prepare

        return getattr(prepare, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
