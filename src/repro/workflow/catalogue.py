"""The Catalogue: the validated config, expanded into the jobs each table and figure needs.

``workflow/rules/common.smk`` builds one :class:`Catalogue` from the validated config; every rule
asks it for its inputs and params. It is composed of three parts, one module each:
:class:`~repro.workflow.expansion.Expansion` (sweeps, cells, input files, deliverables),
:class:`~repro.workflow.checks.Checks` (cross-checks run on construction) and
:class:`~repro.workflow.params.Params` (each rule's params as canonical JSON). Building it imports
neither torch nor the heavy NLP stack: the DAG of the paper config must build fast.
"""

from __future__ import annotations

import functools

from repro.workflow.checks import Checks
from repro.workflow.params import Params
from repro.workflow.spec import resolve_experiments


class Catalogue(Checks, Params):
    """The validated config, expanded into the jobs each table and figure needs."""

    def __init__(self, config: dict):
        self.config = config
        self.datasets: dict[str, dict] = dict(config["datasets"])
        self.experiments = resolve_experiments(config["experiments"])
        self.metrics: dict[str, dict] = config.get("metrics", {})
        self.tables: dict[str, dict] = config.get("tables", {})
        self.figures: dict[str, dict] = config.get("figures", {})
        self.judges: dict[str, dict] = config.get("judges", {})
        #: (experiment, sampler) -> config path of the figure value a swept sampler comes from
        self._sweep_origin: dict[tuple[str, str], str] = {}
        self._check_sweeps()
        self._add_sweep_samplers()
        self._add_sweep_datasets()
        self._check()
        # asked once per score job by its inputs, params and resources: scan the catalogue once
        self.metrics_for = functools.cache(self.metrics_for)
