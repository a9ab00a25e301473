"""DAG-level checks that need no computation: dry runs, lint, profiles, schema errors."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, Project, jobs_by_rule, load_smoke


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    return Project.copy(tmp_path_factory.mktemp("dag"))


def test_paper_config_dag_builds(project):
    jobs = jobs_by_rule(project.dry_run("paper"))
    # every stage of the spine is in the paper DAG, with the AR rows of every table
    for rule in ("download_dataset", "prepare_dataset", "train_tokenizer", "tokenize",
                 "train_model", "sample_text", "score_samples", "make_table", "make_figure"):
        assert rule in jobs, rule
    tables = {j.wildcards["table"] for j in jobs["make_table"]}
    assert tables == {"table1", "table2", "table3", "table4", "qqp_paraphrase", "qqp_nfe",
                      "qqp_samples"}
    trained = {(j.wildcards["dataset"], j.wildcards["experiment"]) for j in jobs["train_model"]}
    assert ("python_code", "ar_150m") in trained and ("mbpp", "ar_150m") not in trained
    assert len(jobs["sample_text"]) >= 25  # table4's AR row alone has 25 sample seeds


def test_one_table_asks_only_for_its_jobs(project):
    jobs = jobs_by_rule(project.dry_run("results/tables/table3.csv"))
    assert {j.wildcards["dataset"] for j in jobs["train_model"]} == {"lamini", "wmt14"}
    # 8 rows (AR, DFM, KL-flow hybrid and sampling on two datasets) x 5 sample seeds
    assert len(jobs["sample_text"]) == 40 and len(jobs["score_samples"]) == 40
    assert {j.wildcards["experiment"] for j in jobs["train_model"]} == {
        "ar_150m", "dfm_150m", "klflow_150m"}
    assert "make_figure" not in jobs


def test_smoke_config_dag_builds(project):
    jobs = jobs_by_rule(project.dry_run("--configfile", "config/smoke.yaml"))
    assert "download_dataset" not in jobs  # synthetic data: nothing to download
    trained = {(j.wildcards["dataset"], j.wildcards["experiment"]) for j in jobs["train_model"]}
    assert len([e for _, e in trained if e == "ar"]) == 5
    assert {e for d, e in trained if d == "syn_paraphrase"} >= {"diffuseq", "fm", "fm_abl", "fm_abl_random32"}
    # FM-seq2seq's frozen embeddings are the trained DiffuSeq's (one export, read by FM runs)
    assert [j.wildcards["experiment"] for j in jobs["export_embeddings"]] == ["diffuseq"]
    assert [j.wildcards["experiment"] for j in jobs["analyse_loss_vs_t"]] == ["fm"]
    assert {j.wildcards["table"] for j in jobs["make_table"]} == set(load_smoke()["tables"])


def test_configfile_replaces_the_default_config(project):
    proc = project.snakemake("-n", "--cores", "1", "--configfile", "config/smoke.yaml")
    assert "config/config.yaml" not in proc.stdout.split("Config file(s):")[1].splitlines()[0]


def test_snakemake_lint_is_clean(project):
    proc = project.snakemake("--lint", "--configfile", "config/smoke.yaml", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout, proc.stdout


def test_slurm_profile_resolves_from_the_repository_root():
    script = "from snakemake.cli import get_profile_dir; print(get_profile_dir('slurm'))"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "slurm/config.yaml" in out
    assert (REPO / "slurm").resolve() == (REPO / "workflow" / "profiles" / "slurm").resolve()
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert "cpus_per_task" not in profile["default-resources"]  # would override `threads`


def test_slurm_profile_dry_run_builds_the_paper_dag(project):
    proc = project.snakemake("--profile", "slurm", "-n", "paper")
    assert "Using profile slurm" in proc.stdout + proc.stderr
    assert "train_model" in proc.stdout


def test_workstation_profile_and_command_line_overrides(project):
    """One dry run: the workstation profile caps GPUs at one and every GPU job passes its GPU count
    to the launcher; `--config set=…` and REPRO_SET change single keys, with YAML types."""
    env_set = "experiments.ar_150m.train.steps=7"
    proc = project.snakemake(
        "results/tables/table3.csv", "--profile", "workstation", "-n", "-p", "--resources", "gpu=1",
        "--config", "set=experiments.ar_150m.train.steps=10 experiments.ar_150m.train.lr=3e-4",
        env={"REPRO_SET": env_set})
    out = proc.stdout + proc.stderr
    assert "Using profile workstation" in out
    assert "repro: config override experiments.ar_150m.train.steps=7" in out  # REPRO_SET first
    assert "repro: config override experiments.ar_150m.train.steps=10" in out  # then --config
    shells = [line for line in out.splitlines() if line.startswith("Shell command:")]
    ar = [s for s in shells if "repro.train" in s and "/ar_150m/" in s]
    assert ar and all('"steps":10,' in s and '"lr":0.0003,' in s for s in ar)
    other = [s for s in shells if "repro.train" in s and "/ar_150m/" not in s]
    assert other and not any('"steps":10,' in s for s in other)
    for stage, gpus in (("repro.train", "1"), ("repro.sample", "1"), ("repro.score", "")):
        mine = [s for s in shells if f"repro.job {stage} " in s]
        assert mine and all(f"REPRO_JOB_GPUS={gpus}" in s for s in mine), stage


def test_bad_override_fails_naming_it(project):
    proc = project.snakemake("results/tables/table3.csv", "-n", "--config",
                             "set=experiments.ar_150m.train.stepz=10", check=False)
    assert proc.returncode != 0 and "stepz" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["experiments"]["ar"]["train"].update(lr_typo=1.0), "lr_typo"),
        (lambda c: c["experiments"]["ar"]["train"].update(lr="3e-4"), "'3e-4' is not of type 'number'"),
        (lambda c: c["datasets"]["syn_code"].update(kind="cod"), "'cod' is not one of"),
        (lambda c: c.update(tabels={}), "tabels"),
    ],
)
def test_schema_rejects_bad_config_with_a_clear_message(tmp_path, mutate, expected):
    cfg = copy.deepcopy(load_smoke())
    mutate(cfg)
    project = Project.copy(tmp_path, cfg, "bad.yaml")
    proc = project.snakemake("-n", "--configfile", "config/bad.yaml", check=False)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr


def test_inconsistent_config_fails_at_parse_time_naming_the_key(tmp_path):
    cfg = copy.deepcopy(load_smoke())
    cfg["tables"]["table3"]["rows"][0]["sampler"] = "euler"
    project = Project.copy(tmp_path, cfg, "bad.yaml")
    proc = project.snakemake("-n", "--configfile", "config/bad.yaml", check=False)
    assert proc.returncode != 0
    assert "tables.table3.rows[0].sampler" in proc.stdout + proc.stderr


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    proc = subprocess.run([ruff, "check", "src", "tests", "benchmarks"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
