"""Job priorities for Snakemake's scheduler: the critical path first, then the longest work first.

With a fixed number of cores (``make demo``: 2) the order in which *ready* jobs start decides how
long the run's tail is. Snakemake's greedy scheduler starts the ready jobs of highest ``priority``
first and otherwise prefers the jobs with the largest input files — which, in this DAG, starts
every big training before the DiffuSeq → FM-seq2seq chain (two trainings in a row, then FM's
200-step samplers) and leaves that chain to run alone at the end on one core. These priorities
implement the classic list-scheduling rule instead (HEFT's *upward rank*):

    priority(job) = cost(job) + max(priority(j) for j waiting on job's output)

so a job on a long chain starts before an independent job of the same size, and among
independent jobs the longest starts first (LPT, longest processing time first).

``cost`` is a FLOP proxy computed from the config alone (no trained model, no file read):
``tokens x n_layers x d_model²`` per forward pass, three passes per training step (forward and
backward), one per sampling step, in units of 10⁶. Only the order matters; the numbers are
never shown as time estimates. Priorities change no output and no job's parameters, so they
never make anything stale.
"""

from __future__ import annotations

from functools import cache
from typing import Any

#: FLOP-proxy units per priority point
UNIT = 1e6


def _model_size(model: dict[str, Any]) -> float:
    """n_layers x d_model² of an experiment's (or judge's) model config; 1 when not given."""
    d = model.get("d_model", model.get("n_embd", 1))
    n = model.get("n_layers", model.get("n_layer", 1))
    return float(n) * float(d) ** 2


class Priorities:
    """Per-rule priorities of a :class:`repro.workflow.catalogue.Catalogue`'s jobs (see module doc)."""

    def __init__(self, catalogue: Any) -> None:
        self.c = catalogue
        self.train_cost = cache(self.train_cost)  # type: ignore[method-assign]
        self._train = cache(self._train)  # type: ignore[method-assign]
        self._pairs: set[tuple[str, str]] | None = None

    # -- costs ------------------------------------------------------------------------------
    def _seq_len(self, dataset: str) -> float:
        return float(self.c.datasets[dataset].get("seq_len", 1))

    def train_cost(self, dataset: str, experiment: str) -> float:
        exp = self.c.experiments[experiment]
        tr = exp.get("train", {})
        tokens = (
            float(tr.get("steps", 0))
            * float(tr.get("batch_size", 1))
            * float(tr.get("accumulate", 1))
            * self._seq_len(dataset)
        )
        return 3.0 * tokens * _model_size(exp.get("model", {})) / UNIT

    def judge_cost(self, judge: str) -> float:
        tr = self.c.judges[judge].get("train", {})
        tokens = (
            float(tr.get("steps", 0)) * float(tr.get("batch_size", 1)) * tr.get("n_positions", 1)
        )
        return 3.0 * tokens * _model_size(tr) / UNIT

    def sample_cost(self, dataset: str, experiment: str, nfe: int | str) -> float:
        ev = self.c.eval_params(dataset)
        rows = float(ev.get("max_examples") or ev.get("batch_size") or 1)
        size = _model_size(self.c.experiments[experiment].get("model", {}))
        return float(nfe) * rows * self._seq_len(dataset) * size / UNIT

    # -- priorities -------------------------------------------------------------------------
    def _trained(self) -> set[tuple[str, str]]:
        """(training dataset, experiment) of every model some table or figure needs."""
        if self._pairs is not None:
            return self._pairs
        c = self.c
        cells = [cell for t in c.tables for _, cell in c.table_cells(t)]
        cells += [cell for f in c.figures for _, cell in c.figure_cells(f)]
        pairs = {(c.source(cell.dataset), cell.experiment) for cell in cells}
        for f in c.figures:
            if c.is_analysis("figures", f):
                pairs |= {(c.source(s["dataset"]), s["experiment"]) for s in c.analysis_series(f)}
        # embedding sources are trained for their consumers
        pairs |= {(d, src) for d, e in pairs if (src := c.embedding_source(e)) is not None}
        self._pairs = pairs
        return pairs

    def _train(self, dataset: str, experiment: str) -> float:
        consumers = [
            self._train(d, e)
            for d, e in self._trained()
            if d == dataset and self.c.embedding_source(e) == experiment
        ]
        return self.train_cost(dataset, experiment) + max(consumers, default=0.0)

    def train(self, dataset: str, experiment: str) -> int:
        """train_model: its cost plus the largest priority of the trainings reading its output."""
        return round(self._train(dataset, experiment))

    def export(self, dataset: str, experiment: str) -> int:
        """export_embeddings: the priority of its consumers (its own cost is negligible)."""
        return round(self._train(dataset, experiment) - self.train_cost(dataset, experiment))

    def data(self, dataset: str) -> int:
        """prepare_dataset / train_tokenizer / tokenize: the largest training they feed."""
        return max((self.train(d, e) for d, e in self._trained() if d == dataset), default=0)

    def judge(self, judge: str) -> int:
        """train_judge: its own cost (every judge-scored samples file waits on it)."""
        return round(self.judge_cost(judge))

    def sample(self, dataset: str, experiment: str, nfe: int | str) -> int:
        """sample_text: its cost (longest first among the samplers of trained models)."""
        return round(self.sample_cost(dataset, experiment, nfe))
