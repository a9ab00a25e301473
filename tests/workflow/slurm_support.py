"""Shared pieces of the SLURM tests: the small test overlay config and fake SLURM commands.

The overlay (:func:`slice_config`) is a slice of the smoke config: one synthetic dataset, the
smoke AR experiment shortened, two CPU ranks for its training (the multi-rank path inside one
Snakemake job), and two tables of two sample seeds each — ``slurm_slice`` (run cleanly) and
``slurm_faults`` (a longer training that the fault tests interrupt). Dataset, model and metric
definitions come from config/smoke.yaml, so the slice follows the smoke config as it changes.
"""

from __future__ import annotations

import copy
import re
import shlex
import stat
from pathlib import Path

from .conftest import load_smoke

DATASET = "syn_translation"
SLICE_EXP = "slurm_ar"
FAULT_EXP = "slurm_ar_faults"
TABLES = ("slurm_slice", "slurm_faults")
SEEDS = [0, 1]
NFE = 32


def slice_config(**resources) -> dict:
    """The test overlay config (a full config: --configfile replaces the default)."""
    smoke = load_smoke()
    ds = copy.deepcopy(smoke["datasets"][DATASET])
    ds["synthetic"]["size"] = {"train": 600, "validation": 40, "test": 40}
    ds["eval"] = {"split": "test", "max_examples": 16, "batch_size": 16}
    ar = copy.deepcopy(smoke["experiments"]["ar"])
    ar.pop("description", None)
    ar["train"].update(steps=20, warmup_steps=4, val_every=10, ckpt_every=10, val_batches=1)
    # two CPU ranks in one job (one CPU each): Lightning spawns them inside the jobstep's srun -n1
    ar["resources"] = {"devices": 2, "threads": 2}
    faults = {
        "extends": SLICE_EXP,
        # long enough to be cancelled mid-run (seconds), checkpoints often
        "train": {"steps": 300, "val_every": 150, "ckpt_every": 10},
        "resources": {"devices": 1, "threads": 1},
    }
    metrics = {k: copy.deepcopy(smoke["metrics"][k]) for k in ("bleu_klflow", "rouge_l_klflow")}
    columns = [
        {"label": "BLEU Avg", "metric": "bleu_klflow", "aggregate": "mean_of_seeds"},
        {"label": "ROUGE-L Avg", "metric": "rouge_l_klflow", "aggregate": "mean_of_seeds",
         "scale": 100.0},
    ]

    def table(exp: str, title: str) -> dict:
        return {
            "title": title,
            "source": "repro SLURM tests",
            "columns": copy.deepcopy(columns),
            "rows": [{"label": "Autoregressive", "dataset": DATASET, "experiment": exp,
                      "sampler": "ancestral", "nfe": NFE, "seeds": list(SEEDS)}],
        }

    res = {
        "train": {"threads": 1, "mem_mb": 3000, "runtime": 10, "gpu": 0, "retries": 2},
        "sample": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0},
        "score": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0},
        "default": {"threads": 1, "mem_mb": 2000, "runtime": 10},
    }
    for stage, over in resources.items():
        res[stage] = {**res[stage], **over}
    return {
        "scale": "slurm-test",
        "accelerator": "cpu",
        "resources": res,
        "datasets": {DATASET: ds},
        "experiments": {SLICE_EXP: ar, FAULT_EXP: faults},
        "metrics": metrics,
        "tables": {
            "slurm_slice": table(SLICE_EXP, "SLURM test slice: AR on the toy translation task"),
            "slurm_faults": table(FAULT_EXP, "SLURM fault tests: the longer AR run"),
        },
        "figures": {},
    }


def table_target(name: str) -> str:
    return f"results/tables/{name}.csv"


def model_path(exp: str) -> str:
    return f"results/train/{DATASET}/{exp}/model.ckpt"


def train_log(exp: str) -> str:
    return f"logs/train_model/{DATASET}/{exp}.log"


# ---------------------------------------------------------------------------------- SLURM logs

_SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.")


def submissions(snakemake_output: str) -> list[tuple[str, str, Path]]:
    """(snakemake job id, SLURM job id, SLURM log) of every sbatch submission in the output."""
    return [(a, b, Path(c)) for a, b, c in _SUBMITTED.findall(snakemake_output)]


def slurm_env(partition: str = "debug") -> dict[str, str]:
    """Site settings of the test cluster (README's variables)."""
    return {
        "REPRO_SLURM_ACCOUNT": "",
        "REPRO_CPU_PARTITION": partition,
        "REPRO_GPU_PARTITION": partition,
    }


# ---------------------------------------------------------------------------------- fake SLURM


def write_fake_slurm(bin_dir: Path, record: Path) -> None:
    """Fake sbatch/squeue/sacct/…: sbatch records its arguments (one shell-quoted line per call)
    and refuses the job, so Snakemake's generated sbatch calls can be read without a cluster."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    scripts = {
        "sbatch": (
            "#!/bin/sh\n"
            f"printf '%s\\n' \"$(python3 -c 'import shlex,sys; print(shlex.join(sys.argv[1:]))' "
            f"\"$@\")\" >> {shlex.quote(str(record))}\n"
            "echo 'sbatch: error: fake sbatch of the repro tests: job not submitted' >&2\n"
            "exit 1\n"
        ),
        "sacctmgr": '#!/bin/sh\necho "$REPRO_SLURM_ACCOUNT"\n',
    }
    for name in ("sinfo", "squeue", "sacct", "scontrol", "sshare", "scancel"):
        scripts[name] = "#!/bin/sh\nexit 0\n"
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def recorded_calls(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [shlex.split(line) for line in record.read_text().splitlines() if line.strip()]


def comment_of(call: list[str]) -> str:
    return call[call.index("--comment") + 1]
