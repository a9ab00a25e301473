"""Harness for workflow tests: run Snakemake on a private copy of the project.

Each project copy holds the Snakefile, workflow/, config/, envs/ and src/ (put first on PYTHONPATH,
so the copy's package is what the DAG digests and what the jobs run). Tests may therefore edit
the copy's sources and configs freely without touching the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from repro.config_file import load_config_file

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = str(Path(sys.executable).parent)


@dataclass
class Job:
    rule: str
    wildcards: dict[str, str]
    reason: str


class Project:
    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def copy(cls, dest: Path, config: dict | None = None, name: str = "test.yaml") -> Project:
        dest.mkdir(parents=True, exist_ok=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
        for item in ("Snakefile", "workflow", "config", "envs", "src"):
            src = REPO / item
            if src.is_dir():
                shutil.copytree(src, dest / item, ignore=ignore, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dest / item)
        (dest / "slurm").symlink_to("workflow/profiles/slurm")
        (dest / "workstation").symlink_to("workflow/profiles/workstation")
        project = cls(dest)
        if config is not None:
            project.write_config(config, name)
        return project

    def write_config(self, config: dict, name: str = "test.yaml") -> Path:
        path = self.root / "config" / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.root / "src")
        env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("HF_DATASETS_OFFLINE", "1")
        return env

    def snakemake(self, *args: str, check: bool = True, timeout: float = 1500,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "snakemake", *args]
        proc = subprocess.run(cmd, cwd=self.root, env={**self.env(), **(env or {})},
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
            )
        return proc

    def dry_run(self, *args: str) -> list[Job]:
        proc = self.snakemake("-n", "--cores", "1", *args)
        return parse_jobs(proc.stdout + proc.stderr)

    def touch_source(self, rel: str) -> None:
        path = self.root / "src" / "repro" / rel
        os.utime(path)

    def append_source(self, rel: str, text: str) -> None:
        path = self.root / "src" / "repro" / rel
        path.write_text(path.read_text() + text)


_RULE = re.compile(r"^(?:local)?rule (\w+):\s*$")


def parse_jobs(output: str) -> list[Job]:
    """Jobs of a `snakemake -n` listing: rule, wildcards, reason (the aggregate rules excluded)."""
    jobs: list[Job] = []
    current: dict | None = None
    for line in output.splitlines():
        m = _RULE.match(line.strip())
        if m:
            current = {"rule": m.group(1), "wildcards": {}, "reason": ""}
            jobs.append(current)  # type: ignore[arg-type]
            continue
        if current is None or not line.startswith("    "):
            continue
        key, _, value = line.strip().partition(": ")
        if key == "reason":
            current["reason"] = value
        elif key == "wildcards":
            current["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", "))
    return [Job(**j) for j in jobs if j["rule"] not in ("all", "paper")]  # type: ignore[arg-type]


def jobs_by_rule(jobs: list[Job]) -> dict[str, list[Job]]:
    out: dict[str, list[Job]] = {}
    for job in jobs:
        out.setdefault(job.rule, []).append(job)
    return out


def load_smoke() -> dict:
    return load_config_file(REPO / "config" / "smoke.yaml")
