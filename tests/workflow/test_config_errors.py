"""Config errors as a user meets them: real dry runs fail before any job, naming file:line or the
config path. One Snakemake process per case (each costs seconds); the catalogue's checks are
covered case by case in-process in tests/workflow/test_catalogue.py."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest

from repro.config_file import load_config_file, main
from repro.io import InputError

from .conftest import Project, jobs_by_rule, load_smoke


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    return Project.copy(tmp_path_factory.mktemp("config_errors"))


def _fails(proc: subprocess.CompletedProcess, *expected: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Job stats" not in out, out  # no DAG was planned
    for text in expected:
        assert text in out, out


def _typo_sampler_option(cfg):
    cfg["experiments"]["ar"]["samplers"]["ancestral"]["temperatur"] = 0.7


def _typo_method(cfg):
    cfg["experiments"]["klflow"]["method"] = "klfow"


@pytest.mark.parametrize("mutate, expected", [
    (_typo_sampler_option, "experiments.ar.samplers.ancestral.temperatur: sampler option(s) "
                           "['temperatur'] are unknown to method 'ar'"),
    (_typo_method, "experiments.klflow.method: unknown method 'klfow'; known methods: ['ar', "
                   "'dfm', 'diffuseq', 'embedding_fm', 'klflow']"),
])
def test_a_typo_fails_the_dry_run_naming_its_config_path(project, mutate, expected):
    cfg = copy.deepcopy(load_smoke())
    mutate(cfg)
    project.write_config(cfg, "typo.yaml")
    proc = project.snakemake("-n", "--cores", "1", "paper", "--configfile=config/typo.yaml",
                             check=False)
    _fails(proc, expected)


def test_a_duplicate_key_fails_the_dry_run_naming_file_and_line(project):
    text = (project.root / "config" / "smoke.yaml").read_text()
    lines = text.splitlines()
    at = lines.index("scale: smoke")
    lines.insert(at + 1, "scale: paper")
    (project.root / "config" / "dup.yaml").write_text("\n".join(lines) + "\n")
    proc = project.snakemake("-n", "--cores", "1", "--configfile", "config/dup.yaml", check=False)
    _fails(proc, f"dup.yaml:{at + 2}:1: invalid config: duplicate key 'scale' (first given at "
                 f"line {at + 1})")


def test_broken_yaml_in_the_default_config_names_file_and_line(tmp_path):
    project = Project.copy(tmp_path)
    path = project.root / "config" / "config.yaml"
    lines = path.read_text().splitlines()
    at = lines.index("accelerator: auto")
    lines[at] = "accelerator: [auto"  # an unclosed flow sequence
    path.write_text("\n".join(lines) + "\n")
    proc = project.snakemake("-n", "--cores", "1", "paper", check=False)
    _fails(proc, "invalid config: while parsing a flow sequence: ")
    # the line where the parser noticed it: a few lines below the unclosed bracket
    line = int(re.search(r"config/config\.yaml:(\d+):\d+: invalid config", proc.stdout + proc.stderr).group(1))
    assert at + 1 <= line <= at + 5
    assert "not valid JSON or YAML" not in proc.stdout + proc.stderr


def test_snakemake_from_another_directory_refuses(project):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", "../Snakefile", "-n", "--cores", "1", "paper"],
        cwd=project.root / "workflow", env=project.env(), capture_output=True, text=True,
        timeout=300,
    )
    _fails(proc, f"run snakemake from the repository root {project.root.resolve()}")
    assert not (project.root / "workflow" / "results").exists()


def test_config_file_checker_names_the_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("a:\n  steps: 500\n  lr: 0.1\n  steps: 5\n")
    with pytest.raises(InputError, match=r"c\.yaml:4:3: invalid config: duplicate key 'steps' "
                                         r"\(first given at line 2\)"):
        load_config_file(path)
    path.write_text("a: [1, 2\nb: 3\n")
    assert main([str(path)]) == 1
    assert f"{path}:2:" in capsys.readouterr().err
    path.write_text("a: {x: 1}\nb: &anchor {y: 2}\nc:\n  <<: *anchor\n  y: 3\n")  # merge keys stay
    assert load_config_file(path)["c"] == {"y": 3}
    assert main([str(path)]) == 0



def test_config_file_loader_resolves_anchors_and_seed_counts(tmp_path, capsys):
    """What every reader gets: aliases and merge keys resolved into copies, ``seeds: N`` a list."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "experiments:\n"
        "  a: {model: &backbone {d_model: 8, n_layers: 2}}\n"
        "  b: {model: {<<: *backbone, beta: 0.01}}\n"
        "  c: {model: *backbone}\n"
        "tables:\n"
        "  t: {rows: [{label: r, seeds: 4}, {label: q, seeds: [1]}]}\n")
    cfg = load_config_file(path)
    exps = cfg["experiments"]
    assert exps["b"]["model"] == {"d_model": 8, "n_layers": 2, "beta": 0.01}
    assert exps["c"]["model"] == exps["a"]["model"] and exps["c"]["model"] is not exps["a"]["model"]
    assert [r["seeds"] for r in cfg["tables"]["t"]["rows"]] == [[0, 1, 2, 3], [1]]
    path.write_text("tables:\n  t:\n    rows:\n      - {label: r, seeds: 0}\n")
    with pytest.raises(InputError, match=r"c\.yaml: tables\.t\.rows\[0\]\.seeds: 0 seeds"):
        load_config_file(path)
    assert main([str(path)]) == 1
    assert f"{path}: tables.t.rows[0].seeds" in capsys.readouterr().err


def test_a_bad_seed_count_fails_the_dry_run_naming_file_and_key(project):
    text = (project.root / "config" / "smoke.yaml").read_text()
    assert text.count("seeds: 5}") >= 2
    (project.root / "config" / "seeds.yaml").write_text(text.replace("seeds: 5}", "seeds: 0}", 2))
    proc = project.snakemake("-n", "--cores", "1", "--configfile", "config/seeds.yaml", check=False)
    _fails(proc, "config/seeds.yaml: tables.table3.rows[0].seeds: 0 seeds; write a count N >= 1")


def test_a_generic_jsonl_dataset_builds_the_dag_and_its_mapping_is_checked(project):
    """loader jsonl in place of a synthetic dataset: the DAG reads the local files (inputs of
    prepare_dataset) and a missing field mapping fails the dry run naming its config key."""
    data = project.root / "mydata"
    data.mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        (data / f"{split}.jsonl").write_text('{"question": "how are you ?", "para": "how do you do ?"}\n')
    cfg = copy.deepcopy(load_smoke())
    ds = cfg["datasets"]["syn_paraphrase"]
    del ds["synthetic"]
    ds.update(loader="jsonl", fields={"src": "question", "trg": "para"},
              local={s: f"mydata/{s}.jsonl" for s in ("train", "validation", "test")})
    project.write_config(cfg, "jsonl.yaml")
    jobs = jobs_by_rule(project.dry_run("--configfile=config/jsonl.yaml", "all"))
    assert {"dataset": "syn_paraphrase"} in [j.wildcards for j in jobs["prepare_dataset"]]
    assert "download_dataset" not in jobs
    assert any(j.wildcards["dataset"] == "syn_paraphrase" for j in jobs["sample_text"])
    del ds["fields"]["trg"]
    project.write_config(cfg, "jsonl.yaml")
    proc = project.snakemake("-n", "--cores", "1", "--configfile=config/jsonl.yaml", "all",
                             check=False)
    _fails(proc, "datasets.syn_paraphrase.fields.trg: missing; loader 'jsonl' of kind 'seq2seq'")
