"""Strict reading of YAML config files: a duplicate key or a syntax error names file and line.

PyYAML keeps the last of two equal keys (``steps: 500`` then ``steps: 5`` gives 5) and Snakemake
reports a syntax error as "Config file is not valid JSON or YAML", with neither file nor line.
:func:`load_config_file` refuses both, naming ``file:line``. The Snakefile runs it on every
config file of the run (``workflow.configfiles``) before the config is used; Snakemake itself
reads a ``--configfile`` before the Snakefile starts, so a syntax error there is reported by
Snakemake first — ``python -m repro.config_file FILE`` then names its line.

A config file may share values with YAML anchors and aliases (``&gpt2`` … ``*gpt2``, merge keys
``<<: *backbone_150m``) and write a table row's seeds as a count (``seeds: 5``): a loaded
mapping is returned expanded by :func:`repro.overrides.expand`, the dict the pipeline sees
(Snakemake's config is expanded the same way in ``workflow/rules/common.smk``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from repro import overrides
from repro.io import InputError


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser: 5x faster
    """A SafeLoader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # keys merged in with << may be overridden: that is what they are for
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            seen = first.get(key)
        except TypeError:  # an unhashable key: let PyYAML raise its own error below
            continue
        if seen is not None:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first given at line {seen}); a YAML mapping keeps only "
                "the last of equal keys, so remove one",
                key_node.start_mark,
            )
        first[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config_file(path: str | os.PathLike) -> Any:
    """Parse the YAML (or JSON) file ``path``, expanded (:func:`repro.overrides.expand`) when it
    is a mapping; :class:`InputError` names ``file:line`` of a duplicate key or a syntax error,
    ``file: key`` of a bad shorthand, and says so when the file does not exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"config file {path} not found") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = ": ".join(p for p in (err.context, err.problem) if p)
        raise InputError(f"{where}: invalid config: {problem}") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: invalid YAML: {err}") from None
    return overrides.expand(data, str(path)) if isinstance(data, dict) else data


def check_config_files(paths: list[str | os.PathLike]) -> None:
    """Read every config file of a run strictly (see :func:`load_config_file`)."""
    for path in paths:
        load_config_file(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m repro.config_file FILE…``: check config files; exit 1 naming the first error."""
    for path in (sys.argv[1:] if argv is None else argv):
        try:
            load_config_file(path)
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
