"""Scheduling priorities (repro.workflow.priorities): critical path first, then longest first."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.config_file import load_config_file
from repro.workflow.catalogue import Catalogue
from repro.workflow.priorities import Priorities

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["smoke.yaml", "config.yaml"])
def prio(request) -> Priorities:
    cfg = load_config_file(REPO / "config" / request.param)
    return Priorities(Catalogue(cfg))


def test_an_embedding_source_outranks_every_training_it_feeds(prio):
    pairs = prio._trained()
    fed = [(d, e) for d, e in pairs if prio.c.embedding_source(e) is not None]
    assert fed, "both configs train FM-seq2seq on exported DiffuSeq embeddings"
    for d, e in fed:
        src = prio.c.embedding_source(e)
        # the source's priority covers its own work and the longest chain it starts
        assert prio.train(d, src) >= prio.train(d, e) + prio.train_cost(d, src) - 1
        assert prio.export(d, src) >= prio.train(d, e)
        # the data stages of its dataset start before those of any other dataset's cheaper work
        assert prio.data(d) >= prio.train(d, src)


def test_smoke_order_starts_the_diffuseq_chain_first():
    cfg = load_config_file(REPO / "config" / "smoke.yaml")
    p = Priorities(Catalogue(cfg))
    ranked = sorted(p._trained(), key=lambda de: -p.train(*de))
    assert ranked[:2] == [("syn_paraphrase", "diffuseq"), ("syn_paraphrase", "fm")]
    # longest first among independent trainings: the ablations (200 steps) come last
    assert all(e.startswith("fm_abl") for _, e in ranked[-6:])


def test_costs_scale_with_the_work(prio):
    c = prio.c
    d, e = sorted(prio._trained())[0]
    base = prio.train_cost(d, e)
    exp = c.experiments[e]
    exp["train"] = {**exp["train"], "steps": 2 * exp["train"]["steps"]}
    prio.train_cost.cache_clear()
    try:
        assert prio.train_cost(d, e) == pytest.approx(2 * base)
    finally:
        exp["train"]["steps"] //= 2
        prio.train_cost.cache_clear()
    assert prio.sample(d, e, 200) > prio.sample(d, e, 20) > 0
    assert all(isinstance(prio.train(*de), int) for de in prio._trained())
