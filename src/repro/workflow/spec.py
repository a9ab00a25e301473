"""The catalogue's vocabulary: its error, its cells, sweeps, ``extends:`` chains, canonical JSON.

A *cell* is one (dataset, experiment, sampler, NFE) point of a table or figure with its sample
seeds; an ``option_sweep`` figure derives one sampler (or evaluation-only dataset) per swept value,
named ``base.<option><value>``. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from repro.io import InputError
from repro.workflow import paths

#: ``model.embeddings: "from:<experiment>"`` — the frozen matrix of FM-seq2seq comes from another
#: experiment's trained model (rule export_embeddings; methods that can export one:
#: ``MethodInfo.exports_embeddings`` in :mod:`repro.methods`)
EMBEDDING_PREFIX = "from:"
#: figure kinds drawn from ``results/analysis/`` files (rule analyse_loss_vs_t) -> file name
ANALYSIS_FIGURES = {"loss_vs_t": "loss_vs_t.json"}
#: figure kind whose x axis is the value of one sampler option (KL-flow's top-k and t* sweeps)
#: or, with ``sweep: layout``, of one layout option of the evaluation data (App. A's masked p)
OPTION_SWEEP = "option_sweep"
SWEEP_TARGETS = ("sampler", "layout")
#: keys of a sampler's config that the workflow reads and the method's sampler never sees:
#: ``max_examples`` caps the evaluation rows of the sampler's sample jobs
WORKFLOW_SAMPLER_KEYS: tuple[str, ...] = ("max_examples",)


class ConfigError(ValueError):
    """The config is well-typed (the schema passed) but inconsistent; the message names the key."""


@contextlib.contextmanager
def config_path(where: str, add_key: bool = True, suffix: str = "") -> Iterator[None]:
    """Turn a stage's :class:`InputError` into a :class:`ConfigError` prefixed with the config path
    ``where`` (plus the option an :class:`OptionError` names, if ``add_key``)."""
    try:
        yield
    except InputError as err:
        key = getattr(err, "key", None)
        at = f"{where}.{key}" if key and add_key else where
        raise ConfigError(f"{at}: {err}{suffix}") from None


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sweep_name(base: str, option: str, value: object) -> str:
    """Name of the sampler (``sweep: sampler``) or evaluation-only dataset (``sweep: layout``) an
    ``option_sweep`` figure derives from ``base``: ``base.<option><v>``.

    It is a path component (``results/samples/…/hybrid.t_star0.1/…``,
    ``results/samples/humaneval.mask_fraction0.3/…``) and an ordinary sampler or dataset from then
    on, so each swept value is its own sample and score job.
    """
    return f"{base}.{option}{value}"


def sweep_target(spec: dict) -> str:
    """What an ``option_sweep`` figure sweeps: ``sampler`` (default) or ``layout``."""
    return spec.get("sweep", "sampler")


def method_sampler(cfg: dict) -> dict:
    """A config's sampler without the keys only the workflow reads (:data:`WORKFLOW_SAMPLER_KEYS`)."""
    return {k: v for k, v in cfg.items() if k not in WORKFLOW_SAMPLER_KEYS}


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_experiments(experiments: dict[str, dict]) -> dict[str, dict]:
    """Resolve ``extends:`` chains (ablations = a base experiment + overrides)."""
    resolved: dict[str, dict] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict:
        if name in resolved:
            return resolved[name]
        if name not in experiments:
            raise ConfigError(f"experiments.{chain[-1]}.extends: unknown experiment {name!r}")
        if name in chain:
            raise ConfigError(f"experiments: 'extends' cycle {' -> '.join((*chain, name))}")
        exp = copy.deepcopy(experiments[name])  # the catalogue adds sweep samplers to it
        parent = exp.pop("extends", None)
        if parent is not None:
            exp = deep_merge(resolve(parent, (*chain, name)), exp)
        resolved[name] = exp
        return exp

    for name in experiments:
        resolve(name, ())
    return resolved


def metric_kinds() -> tuple[set[str], set[str]]:
    """(per-file kinds, group kinds) implemented in :mod:`repro.metrics` (a light import)."""
    from repro import metrics

    group = set(getattr(metrics, "GROUP_METRICS", {}))
    return set(metrics.METRICS) - group, group


@dataclass(frozen=True)
class Cell:
    """One (dataset, experiment, sampler, nfe) point of the catalogue, with its sample seeds.

    ``mbr``: quality columns read the MBR selection over seeds 0..mbr-1 (DiffuSeq's MBR-10);
    ``group``: group metrics (self-BLEU, div-4) are computed over seeds 0..group-1 (DiffuSeq: 3).
    """

    dataset: str
    experiment: str
    sampler: str
    nfe: int
    seeds: tuple[int, ...]
    mbr: int = 0
    group: int = 0

    def score_path(self, draw: str) -> str:
        """``draw`` is ``seed<s>``, ``mbr<k>`` or ``group<k>``."""
        return paths.scores(self.dataset, self.experiment, self.sampler, self.nfe, draw)

    def samples_path(self, seed: int | None = None) -> str:
        """The samples file of ``seed`` (default: the cell's first seed)."""
        s = self.seeds[0] if seed is None else seed
        return paths.samples(self.dataset, self.experiment, self.sampler, self.nfe, f"seed{s}")
