"""Staleness: after a build, each kind of change reruns exactly the jobs it should (and why).

The build is a reduced smoke config (one dataset, tiny budgets) with three experiments: `ar`,
`ar_b` (extends `ar`) and `twin`, whose method `ar_twin` is a copy of the AR method registered only
in this test's project copy, so that "editing one method's file retrains only its experiments" is
observable.
"""

from __future__ import annotations

import copy
import re

import pytest

from .conftest import Project, jobs_by_rule, load_smoke

pytestmark = pytest.mark.slow


def _config() -> dict:
    smoke = load_smoke()
    ds = copy.deepcopy(smoke["datasets"]["syn_paraphrase"])
    ds["synthetic"]["size"] = {"train": 300, "validation": 20, "test": 20}
    ds["eval"] = {"split": "test", "max_examples": 12, "batch_size": 12}
    ar = copy.deepcopy(smoke["experiments"]["ar"])
    ar["model"] = {"d_model": 16, "n_layers": 1, "n_heads": 2}
    ar["train"].update(steps=6, batch_size=8, val_every=3, ckpt_every=3, warmup_steps=0)
    row = {"dataset": "syn_paraphrase", "sampler": "ancestral", "nfe": 6}
    return {
        "scale": "staleness-test",
        "accelerator": "cpu",
        "resources": smoke["resources"],
        "datasets": {"syn_paraphrase": ds},
        "experiments": {
            "ar": ar,
            "ar_b": {"extends": "ar", "train": {"seed": 1}},
            "twin": {"extends": "ar", "method": "ar_twin"},
        },
        "metrics": {"bleu": smoke["metrics"]["bleu"]},
        "tables": {
            "t": {
                "title": "t",
                "columns": [{"label": "BLEU", "metric": "bleu"}],
                "rows": [
                    {"label": "A", "experiment": "ar", **row},
                    {"label": "B", "experiment": "ar_b", **row},
                    {"label": "T", "experiment": "twin", **row},
                ],
            }
        },
        "figures": {
            "f": {
                "title": "f", "kind": "nfe_curve",
                "metrics": [{"label": "BLEU", "metric": "bleu"}],
                "series": [{"label": "A", "dataset": "syn_paraphrase", "experiment": "ar",
                            "sampler": "greedy", "nfe": [2, 4]}],
            }
        },
    }


def _register_twin(project: Project) -> None:
    """Register `ar_twin`: a self-contained copy of the AR method (its own source file)."""
    methods = project.root / "src" / "repro" / "methods"
    src = (methods / "ar.py").read_text()
    (methods / "ar_twin.py").write_text(src)
    init = methods / "__init__.py"
    text = init.read_text()
    entry = re.search(r'    "ar": MethodInfo\(.*?\n    \),\n', text, re.S).group(0)
    twin = entry.replace('"ar": MethodInfo(', '"ar_twin": MethodInfo(').replace(
        'module="ar"', 'module="ar_twin"')
    init.write_text(text.replace(entry, entry + twin))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    project = Project.copy(tmp_path_factory.mktemp("stale"))
    _register_twin(project)
    cfg = _config()
    project.write_config(cfg)
    project.snakemake("--cores", "2", "all", "--configfile", "config/test.yaml")
    return project, cfg


def _dry(project: Project, cfg: dict | None = None) -> dict:
    if cfg is not None:
        project.write_config(cfg, "changed.yaml")
        return jobs_by_rule(project.dry_run("all", "--configfile", "config/changed.yaml"))
    return jobs_by_rule(project.dry_run("all", "--configfile", "config/test.yaml"))


def _cells(jobs, rule):
    return sorted((j.wildcards.get("experiment"), j.wildcards.get("sampler"), j.wildcards.get("nfe"))
                  for j in jobs.get(rule, []))


def test_nothing_to_do_after_the_build(built):
    project, _ = built
    assert _dry(project) == {}


def test_touch_without_edit_reruns_nothing(built):
    project, _ = built
    for rel in ("methods/ar.py", "train/run.py", "models/transformer.py", "score.py"):
        project.touch_source(rel)
    (project.root / "config" / "test.yaml").touch()
    for path in (project.root / "results" / "data").rglob("*.jsonl"):
        path.touch()  # inputs newer than outputs but with unchanged content
    assert _dry(project) == {}


def test_sampler_option_resamples_only_that_experiment(built):
    project, cfg = built
    cfg = copy.deepcopy(cfg)
    cfg["experiments"]["ar_b"]["samplers"] = {"ancestral": {"kind": "ancestral", "temperature": 0.5}}
    jobs = _dry(project, cfg)
    assert set(jobs) == {"sample_text", "score_samples", "make_table"}
    assert _cells(jobs, "sample_text") == [("ar_b", "ancestral", "6")]
    assert "Params have changed" in jobs["sample_text"][0].reason


def test_nfe_grid_change_samples_only_the_new_points(built):
    project, cfg = built
    cfg = copy.deepcopy(cfg)
    cfg["figures"]["f"]["series"][0]["nfe"] = [2, 4, 8]
    jobs = _dry(project, cfg)
    assert set(jobs) == {"sample_text", "score_samples", "make_figure"}
    assert _cells(jobs, "sample_text") == [("ar", "greedy", "8")]


def test_training_option_retrains_only_that_experiment(built):
    project, cfg = built
    cfg = copy.deepcopy(cfg)
    cfg["experiments"]["ar_b"]["train"]["lr"] = 1.0e-3
    jobs = _dry(project, cfg)
    assert [j.wildcards["experiment"] for j in jobs["train_model"]] == ["ar_b"]
    assert "Params have changed" in jobs["train_model"][0].reason
    assert _cells(jobs, "sample_text") == [("ar_b", "ancestral", "6")]
    assert {"prepare_dataset", "tokenize", "train_tokenizer"}.isdisjoint(jobs)


def test_editing_a_method_file_retrains_only_its_experiments(built):
    project, _ = built
    project.append_source("methods/ar_twin.py", "\n# an edit\n")
    try:
        jobs = _dry(project)
        assert [j.wildcards["experiment"] for j in jobs["train_model"]] == ["twin"]
        assert _cells(jobs, "sample_text") == [("twin", "ancestral", "6")]
        assert "make_figure" not in jobs  # the figure reads `ar` only
    finally:
        path = project.root / "src" / "repro" / "methods" / "ar_twin.py"
        path.write_text(path.read_text().replace("\n# an edit\n", ""))
    project.append_source("methods/ar.py", "\n# an edit\n")
    try:
        jobs = _dry(project)
        assert sorted(j.wildcards["experiment"] for j in jobs["train_model"]) == ["ar", "ar_b"]
    finally:
        path = project.root / "src" / "repro" / "methods" / "ar.py"
        path.write_text(path.read_text().replace("\n# an edit\n", ""))
    assert _dry(project) == {}


def test_metric_option_rescores_without_resampling(built):
    project, cfg = built
    cfg = copy.deepcopy(cfg)
    cfg["metrics"]["bleu"]["clean"] = "none"
    jobs = _dry(project, cfg)
    assert set(jobs) == {"score_samples", "make_table", "make_figure"}
