"""Budgets of the spine, measured in one run on this machine (`make bench`).

1. ``snakemake -n paper`` on the paper config: DAG build time (budget 10 s). Measured twice: on the
   config as it is (AR rows only until the other methods land) and on the full-size catalogue, where
   the not-yet-implemented methods are registered (in a scratch copy) under their own names so that
   every row of every table is in the DAG — hundreds of jobs, as the finished pipeline will have.
2. The whole smoke DAG from scratch with 2 cores (``make demo`` from a warm .venv): budget 10 min,
   target 5.
3. A no-op rerun of the built smoke DAG (``snakemake --cores 2 all`` with everything up to date):
   budget 5 s.

Prints one line per budget with measured/budget ratios and writes the numbers as JSON
(``--json PATH``). Runs on a scratch copy of the project; the repository is never written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)

#: Sampler kinds and model keys of the methods still to come, as the paper config names them; only
#: used to make their catalogue rows part of a dry-run DAG.
FUTURE_METHODS = {
    "diffuseq": (
        ("ddpm", "ddim_gap", "ddim_respaced"),
        ("d_model", "n_layers", "n_heads", "emb_dim", "dropout", "diffusion_steps", "schedule"),
    ),
    "embedding_fm": (
        ("euler",),
        (
            "d_model",
            "n_layers",
            "n_heads",
            "mlp_ratio",
            "time_dim",
            "time_max_period",
            "embeddings",
            "emb_dim",
        ),
    ),
    "klflow": (
        ("basic", "semi_sampling", "sampling", "hybrid"),
        ("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout", "pos_emb", "beta", "t_max"),
    ),
    "dfm": (
        ("mixture_euler",),
        ("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout", "pos_emb", "scheduler"),
    ),
}


def copy_project(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    dest.mkdir(parents=True)
    for item in ("Snakefile", "workflow", "config", "envs", "src"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=ignore)
        else:
            shutil.copy2(src, dest / item)
    return dest


def register_future_methods(project: Path) -> None:
    init = project / "src" / "repro" / "methods" / "__init__.py"
    text = init.read_text()
    entries = ""
    for name, (samplers, keys) in FUTURE_METHODS.items():
        if f'"{name}": MethodInfo(' in text:
            continue  # already implemented for real
        entries += (
            f'    "{name}": MethodInfo(module="ar", cls="Autoregressive", '
            f'layouts={{"seq2seq": "conditional", "text": "lm", "code": "infill"}}, '
            f"samplers={samplers!r}, model_keys={keys!r}),\n"
        )
    init.write_text(re.sub(r"(REGISTRY: dict\[str, MethodInfo\] = \{\n)", r"\1" + entries, text))


def env_for(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(project / "src"),
        PATH=BIN + os.pathsep + env.get("PATH", ""),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    return env


def snakemake(project: Path, *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(
            f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return wall, proc.stdout + proc.stderr


def job_count(output: str) -> int:
    m = re.search(r"^total\s+(\d+)", output, re.M)
    return int(m.group(1)) if m else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--skip-smoke", action="store_true", help="only the dry-run budgets")
    args = ap.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="repro-bench-") as tmp:
        project = copy_project(Path(tmp) / "as_is")
        runs = [snakemake(project, "-n", "--cores", "1", "paper") for _ in range(3)]
        results["paper_dag_as_is"] = {
            "seconds": statistics.median(w for w, _ in runs),
            "jobs": job_count(runs[0][1]),
            "budget": 10.0,
        }
        full = copy_project(Path(tmp) / "full")
        register_future_methods(full)
        runs = [snakemake(full, "-n", "--cores", "1", "paper") for _ in range(3)]
        results["paper_dag_full_catalogue"] = {
            "seconds": statistics.median(w for w, _ in runs),
            "jobs": job_count(runs[0][1]),
            "budget": 10.0,
        }
        if not args.skip_smoke:
            wall, out = snakemake(
                project,
                "--profile",
                "workflow/profiles/local",
                "--cores",
                "2",
                "all",
                "--configfile",
                "config/smoke.yaml",
            )
            results["smoke_dag_from_scratch"] = {
                "seconds": wall,
                "jobs": job_count(out),
                "budget": 600.0,
                "target": 300.0,
            }
            noop = [
                snakemake(project, "--cores", "2", "all", "--configfile", "config/smoke.yaml")
                for _ in range(3)
            ]
            assert all("Nothing to be done" in o for _, o in noop), "no-op rerun did work"
            results["smoke_noop_rerun"] = {
                "seconds": statistics.median(w for w, _ in noop),
                "budget": 5.0,
            }
    print(f"{'budget':<28}{'jobs':>6}{'seconds':>10}{'budget s':>10}{'ratio':>8}")
    for name, r in results.items():
        ratio = r["seconds"] / r["budget"]
        print(
            f"{name:<28}{r.get('jobs', ''):>6}{r['seconds']:>10.2f}{r['budget']:>10.0f}{ratio:>8.2f}"
            + (
                f"   (target {r['target']:.0f} s: ratio {r['seconds'] / r['target']:.2f})"
                if "target" in r
                else ""
            )
        )
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
