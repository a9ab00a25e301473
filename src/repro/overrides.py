"""The config between its files and the schema: single keys set on the command line (with YAML
types), ``data_root`` and the expansion of a file's shorthands, all before validation.

Snakemake's ``--config KEY=VALUE`` replaces a whole top-level key, so changing one training step
count would mean retyping the experiment. Instead the Snakefile takes dotted assignments::

    snakemake -n paper --config set="experiments.ar_150m.train.steps=10 resources.train.gpu=2"
    REPRO_SET="experiments.ar_150m.train.steps=10" snakemake -n paper

Each assignment is ``dotted.key=value``; assignments are separated by whitespace (quote a value
with spaces the shell way: ``set="datasets.qqp.eval.split='test'"``); the value is read as YAML,
so ``10`` is an int, ``3e-4`` a float, ``true`` a bool, ``[1, 2]`` a list,
``{a: 1}`` a mapping and ``null`` removes the key. Missing intermediate mappings are created, so a
typo gives a new key that the schema then rejects, naming it. ``REPRO_SET`` is applied first, then
``--config set=…``; both after the config files (the default ``config/config.yaml``, or those of
``--configfile``), and before the schema validation.

Two more steps run between the config files and the schema, and this module holds them too:
:func:`resolve_data_root` (``data_root`` moves relative ``local:`` files) and :func:`expand`, the
config's one shorthand — ``seeds: N`` in a table row or figure series is the list
``[0, 1, …, N-1]`` — which also gives every YAML alias (``*name``, ``<<: *name``) its own copy, so
setting one key of an experiment never changes another that shares its anchor.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, MutableMapping
from typing import Any

import yaml

from repro.io import InputError

#: the ``--config`` key that carries the assignments
CONFIG_KEY = "set"
#: the environment variable that carries the assignments
ENV_VAR = "REPRO_SET"

_KEY_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


class OverrideError(ValueError):
    """A malformed assignment; the message names it and where it came from."""


def parse_value(text: str) -> Any:
    """A value as YAML, except that ``3e-4``-style numbers are floats (YAML 1.1 reads a string)."""
    if _FLOAT.match(text.strip()):
        return float(text)
    return yaml.safe_load(text) if text.strip() else ""


def parse(text: str, source: str) -> list[tuple[list[str], Any]]:
    """``[(["a", "b"], value), …]`` of ``"a.b=value …"``; errors name ``source`` and the item."""
    try:
        items = shlex.split(text)
    except ValueError as exc:
        raise OverrideError(f"{source}: {exc} in {text!r}") from None
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise OverrideError(f"{source}: {item!r} is not dotted.key=value")
        parts = key.split(".")
        if any(not p or not _KEY_PART.match(p) for p in parts):
            raise OverrideError(f"{source}: {key!r} is not a dotted key (e.g. experiments.ar.train.steps)")
        try:
            value = parse_value(raw)
        except yaml.YAMLError as exc:
            raise OverrideError(f"{source}: the value of {key} is not YAML ({raw!r}): {exc}") from None
        out.append((parts, value))
    return out


def assign(config: MutableMapping[str, Any], parts: list[str], value: Any, source: str) -> None:
    """``config[a][b]… = value`` (None deletes), creating missing mappings."""
    node: Any = config
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, MutableMapping):
            where = ".".join(parts[: i + 1])
            raise OverrideError(
                f"{source}: cannot set {'.'.join(parts)}: {where} is a {type(child).__name__}, "
                "not a mapping"
            )
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def apply(config: MutableMapping[str, Any], environ: MutableMapping[str, str]) -> list[str]:
    """Apply ``REPRO_SET`` and then ``config["set"]`` (removed) to ``config`` in place.

    Returns the applied assignments as ``key=value`` strings (for a log line).
    """
    sources = []
    if environ.get(ENV_VAR, "").strip():
        sources.append((ENV_VAR, environ[ENV_VAR]))
    if CONFIG_KEY in config:
        raw = config.pop(CONFIG_KEY)
        if not isinstance(raw, str):
            raise OverrideError(
                f"--config {CONFIG_KEY}=…: expected a string of dotted.key=value assignments, "
                f"got {raw!r}"
            )
        sources.append((f"--config {CONFIG_KEY}", raw))
    applied = []
    if sources:  # an assignment changes one place, never another aliased to it
        _unshare_top_level(config)
    for source, text in sources:
        for parts, value in parse(text, source):
            assign(config, parts, value, source)
            applied.append(f"{'.'.join(parts)}={value!r}")
    return applied


#: the top-level key under which relative ``local:`` paths are resolved
DATA_ROOT_KEY = "data_root"


def resolve_data_root(config: MutableMapping[str, Any]) -> str | None:
    """Prefix ``config["data_root"]`` to every relative path of ``datasets.*.local`` and
    ``judges.*.local``, in place; return the root (None when the key is absent).

    One key moves a config's local files: ``--config data_root=/scratch/samples`` (or
    ``set="data_root=…"``). Absolute paths are left as they are. The prefixed paths are what the
    data stage reads and what Snakemake tracks, so moving the files re-prepares the datasets.
    """
    root = config.get(DATA_ROOT_KEY)
    if root is None:
        return None
    if not isinstance(root, str) or not root:
        raise OverrideError(f"{DATA_ROOT_KEY}: expected a directory path, got {root!r}")

    def under(path: Any) -> Any:
        if not isinstance(path, str) or not path:
            return path  # the schema names the key
        return path if os.path.isabs(path) else os.path.join(root, path)

    for ds in (config.get("datasets") or {}).values():
        local = ds.get("local") if isinstance(ds, MutableMapping) else None
        if isinstance(local, MutableMapping):
            for split, paths in local.items():
                local[split] = [under(p) for p in paths] if isinstance(paths, list) else under(paths)
    for judge in (config.get("judges") or {}).values():
        if isinstance(judge, MutableMapping) and "local" in judge:
            judge["local"] = under(judge["local"])
    return root


#: the catalogue sections whose entries list points with ``seeds``, and the key of that list
_SEEDED = {"tables": "rows", "figures": "series"}


def _unshared(value: Any) -> Any:
    """A copy of a loaded YAML tree in which no mapping or list is reachable twice (a YAML alias
    loads as the very object of its anchor)."""
    if isinstance(value, Mapping):
        return {k: _unshared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshared(v) for v in value]
    return value


def _unshare_top_level(config: MutableMapping[str, Any]) -> None:
    for key in list(config):
        config[key] = _unshared(config[key])


def _expand_seeds(point: Any, where: str) -> None:
    seeds = point.get("seeds") if isinstance(point, MutableMapping) else None
    if isinstance(seeds, bool) or not isinstance(seeds, int):
        return  # a list, or a wrong type the schema names
    if seeds < 1:
        raise InputError(
            f"{where}.seeds: {seeds} seeds; write a count N >= 1 (seeds 0..N-1) or a list"
        )
    point["seeds"] = list(range(seeds))


def expand(config: MutableMapping[str, Any], source: str = "config") -> MutableMapping[str, Any]:
    """Expand ``config`` in place (and return it): every top-level value becomes an unshared copy
    (see :func:`_unshared`), and ``seeds: N`` of each ``tables.*.rows[i]`` and
    ``figures.*.series[i]`` becomes ``[0, …, N-1]``.

    :class:`InputError` names ``source`` (the file) and the key of a count below 1.
    """
    _unshare_top_level(config)
    for section, list_key in _SEEDED.items():
        entries = config.get(section)
        for name, entry in (entries.items() if isinstance(entries, Mapping) else ()):
            points = entry.get(list_key) if isinstance(entry, Mapping) else None
            for i, point in enumerate(points if isinstance(points, list) else ()):
                _expand_seeds(point, f"{source}: {section}.{name}.{list_key}[{i}]")
    return config
