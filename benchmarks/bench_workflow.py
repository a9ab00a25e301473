"""Budgets of the spine, measured in one run on this machine (`make bench`).

1. ``snakemake -n paper`` on the paper config: DAG build time (budget 5 s).
2. The whole smoke DAG from scratch with 2 cores (``make demo`` from a warm .venv): budget 300 s.
   Printed with the per-rule table of that run — jobs, wall seconds (Snakemake's ``benchmark:``
   files), mean seconds per job, the stage's own CPU and wall seconds (the ``repro.job:`` line at
   the end of each job log: everything from running the stage module to its exit — project
   imports, reading, computing, writing) — and the share of job time that is *not* the stage's
   own work (interpreter start, third-party imports when no warm worker served the job, the
   launcher, the shell): budget 25 %.
3. A no-op rerun of the built smoke DAG (``snakemake --cores 2 all`` with everything up to date):
   budget 3 s.

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


def env_for(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(project / "src"),
        PATH=BIN + os.pathsep + env.get("PATH", ""),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    return env


#: runs Snakemake in this interpreter and prints the CPU seconds of its own process (scheduler,
#: job bookkeeping, benchmark timers: every thread, none of the jobs) when it exits
_SNAKEMAKE = (
    "import atexit, resource, sys\n"
    "def _cpu():\n"
    "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    print(f'repro.bench: snakemake process cpu {r.ru_utime + r.ru_stime:.2f} s', file=sys.stderr)\n"
    "atexit.register(_cpu)\n"
    "sys.argv[0] = 'snakemake'\n"
    "from snakemake.cli import main\n"
    "main()\n"
)
_SMK_CPU = re.compile(r"^repro\.bench: snakemake process cpu ([\d.]+) s", re.M)


def snakemake(project: Path, *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _SNAKEMAKE, *args],
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


_STAGE = re.compile(r"^repro\.job: \S+ exit -?\d+ in ([\d.]+) s \(cpu ([\d.]+) s, (\w+)\)", re.M)


def job_walls(project: Path) -> dict[Path, float]:
    """Each benchmarked job (its benchmark file under ``benchmarks/``) and its wall seconds."""
    bench = project / "benchmarks"
    return {
        tsv.relative_to(bench): float(tsv.read_text().splitlines()[-1].split("\t")[0])
        for tsv in sorted(bench.rglob("*.tsv"))
    }


def per_rule(project: Path, walls: dict[Path, float]) -> dict[str, dict]:
    """Per rule: jobs, wall (benchmark files), stage wall/CPU (job logs), warm-served jobs."""
    rules: dict[str, dict] = {}
    for rel, wall in walls.items():
        rule = rel.parts[0]
        log = project / "logs" / rel.with_suffix(".log")
        found = _STAGE.findall(log.read_text()) if log.is_file() else []
        r = rules.setdefault(rule, {"jobs": 0, "wall": 0.0, "stage": 0.0, "cpu": 0.0,
                                    "warm": 0, "untimed": 0})
        r["jobs"] += 1
        r["wall"] += wall
        if found:
            stage, cpu, mode = found[-1]
            r["stage"] += min(float(stage), wall)
            r["cpu"] += float(cpu)
            r["warm"] += mode == "warm"
        else:
            r["untimed"] += 1
    return rules


def print_rules(rules: dict[str, dict]) -> float:
    print(f"{'rule':<22}{'jobs':>6}{'wall s':>9}{'s/job':>8}{'stage s':>9}{'cpu s':>8}"
          f"{'warm':>6}{'not work':>10}")
    tot_wall = tot_stage = 0.0
    for rule, r in sorted(rules.items(), key=lambda kv: -kv[1]["wall"]):
        tot_wall += r["wall"]
        tot_stage += r["stage"]
        share = 1 - r["stage"] / r["wall"] if r["wall"] else 0.0
        print(f"{rule:<22}{r['jobs']:>6}{r['wall']:>9.1f}{r['wall'] / r['jobs']:>8.2f}"
              f"{r['stage']:>9.1f}{r['cpu']:>8.1f}{r['warm']:>6}{share:>9.0%}"
              + (f"  ({r['untimed']} without a repro.job line)" if r["untimed"] else ""))
    share = 1 - tot_stage / tot_wall if tot_wall else 0.0
    print(f"{'all':<22}{sum(r['jobs'] for r in rules.values()):>6}{tot_wall:>9.1f}{'':>8}"
          f"{tot_stage:>9.1f}{'':>8}{'':>6}{share:>9.0%}")
    return share


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--skip-smoke", action="store_true", help="only the dry-run budget")
    args = ap.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="repro-bench-") as tmp:
        project = copy_project(Path(tmp) / "as_is")
        runs = [snakemake(project, "-n", "--cores", "1", "paper") for _ in range(3)]
        results["paper_dry_run"] = {
            "seconds": statistics.median(w for w, _ in runs),
            "jobs": job_count(runs[0][1]),
            "budget": 5.0,
        }
        if not args.skip_smoke:
            wall, out = snakemake(project, "--profile", "workflow/profiles/local", "--cores", "2",
                                  "all", "--configfile", "config/smoke.yaml")
            results["smoke_dag_from_scratch"] = {
                "seconds": wall,
                "jobs": job_count(out),
                "budget": 300.0,
            }
            smk_cpu = _SMK_CPU.findall(out)
            if smk_cpu:
                print(f"Snakemake's own process: {float(smk_cpu[-1]):.1f} CPU s "
                      f"({float(smk_cpu[-1]) / wall:.0%} of one core over the run)")
                results["smoke_snakemake_process"] = {"cpu_seconds": float(smk_cpu[-1])}
            walls = job_walls(project)
            rules = per_rule(project, walls)
            print("smoke DAG, per rule (wall: benchmark files; stage: the repro.job line of each log)")
            share = print_rules(rules)
            slowest = sorted(walls.items(), key=lambda kv: -kv[1])[:10]
            print("slowest jobs (wall s): " + ", ".join(f"{j} {w:.1f}" for j, w in slowest))
            results["smoke_slowest_jobs"] = {str(j): w for j, w in slowest}
            results["smoke_not_work_share"] = {"seconds": share, "budget": 0.25}
            results["smoke_rules"] = rules
            noop = [
                snakemake(project, "--cores", "2", "all", "--configfile", "config/smoke.yaml")
                for _ in range(3)
            ]
            assert all("Nothing to be done" in o for _, o in noop), "no-op rerun did work"
            results["smoke_noop_rerun"] = {
                "seconds": statistics.median(w for w, _ in noop),
                "budget": 3.0,
            }
    print(f"\n{'budget':<28}{'jobs':>6}{'measured':>10}{'budget':>10}{'ratio':>8}")
    for name, r in results.items():
        if "budget" not in r:
            continue
        ratio = r["seconds"] / r["budget"]
        print(f"{name:<28}{r.get('jobs', ''):>6}{r['seconds']:>10.2f}{r['budget']:>10.2f}"
              f"{ratio:>8.2f}")
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
