"""SLURM resources of each job and site settings, read when Snakemake builds the DAG.

The rule files call these helpers on the login node; nothing here imports torch or the NLP stack,
and no training/sampling code imports this module (so editing it never makes trained models
stale). See docs/pipeline.md §2–3 and the README's "Running on a SLURM cluster".

**Site settings** come from environment variables, read when the DAG is built:

============================  ==================================================================
``REPRO_SLURM_ACCOUNT``       ``sbatch -A`` (workflow/profiles/slurm/config.yaml)
``REPRO_CPU_PARTITION``       partition of jobs that request no GPU (the profile's default)
``REPRO_GPU_PARTITION``       partition of jobs that request GPUs (train, sample, GPU scoring)
``REPRO_GPU_CONSTRAINT``      optional ``sbatch -C`` of GPU jobs, e.g. ``a100|h100``
``REPRO_GPU_MODEL``           optional GPU model of GPU jobs: ``--gpus=<model>:<n>``
============================  ==================================================================

An unset partition stays the literal ``$REPRO_GPU_PARTITION``, so ``sbatch`` fails naming it.

**Resources per job** (:func:`train_resources`, :func:`scaled`): ``resources.<stage>`` of the
config (``threads``, ``mem_mb``, ``runtime``, ``gpu``), overridden for one experiment's training by
``experiments.<name>.resources`` (also ``nodes``, ``devices``, ``stop_margin_s``). Memory grows
with the attempt (``mem_mb * attempt``) and so does time (training: ``runtime * min(attempt, 2)``,
since a retry resumes from its checkpoint); never a ``cpus_per_task`` default (it would override
``threads``).

**Multi-GPU training in one Snakemake job** (docs/pipeline.md §3.1, §3.3): one node with G GPUs is the
jobstep's ``srun -n1`` with ``--gpus=G``; Lightning then spawns the G ranks itself. Several nodes
take the MPI path: ``mpi="srun"`` + ``tasks_per_node`` + ``gres``, no jobstep ``srun``, and the
rule's shell starts one rank per GPU with :func:`train_launcher`. ``repro.train`` checks at
start that the world it got is the one asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from repro.workflow.hub import metric_hub_inputs

#: keys of ``experiments.<name>.resources`` (beyond those of ``resources.train``)
TRAIN_KEYS = ("threads", "mem_mb", "runtime", "gpu", "nodes", "devices", "stop_margin_s")


class ClusterConfigError(ValueError):
    """Inconsistent resources in the config; the message names the key."""


# ------------------------------------------------------------------------------ site settings


def env_setting(name: str, default: str | None = None) -> str | None:
    """``$name`` when set and non-empty, else ``default``."""
    value = os.environ.get(name, "").strip()
    return value or default


def partition(gpus: int) -> str:
    """``REPRO_GPU_PARTITION`` for GPU jobs, ``REPRO_CPU_PARTITION`` otherwise (literal if unset)."""
    name = "REPRO_GPU_PARTITION" if gpus > 0 else "REPRO_CPU_PARTITION"
    return env_setting(name, f"${name}")  # type: ignore[return-value]


def site_resources(
    gpus: Callable[..., int], model_via_gpus: Callable[..., bool] | None = None
) -> dict[str, Callable[..., Any]]:
    """Per-job SLURM resources that depend on whether the job requests GPUs.

    ``gpus`` maps a job's wildcards to its GPU count. Returns lambdas for ``slurm_partition``,
    ``constraint`` and ``gpu_model`` (None, i.e. no flag, for CPU jobs or when unset).
    ``model_via_gpus(wc)`` False leaves ``gpu_model`` out for jobs that request their GPUs as
    ``gres`` (multi-node training carries the model in its gres; with ``gpu_model`` the plugin
    would add ``--gpus=<model>:1`` on top).
    """

    def gpu_model(wc: Any) -> str | None:
        if not gpus(wc) or (model_via_gpus is not None and not model_via_gpus(wc)):
            return None
        return env_setting("REPRO_GPU_MODEL")

    return {
        "slurm_partition": lambda wc: partition(gpus(wc)),
        "constraint": lambda wc: env_setting("REPRO_GPU_CONSTRAINT") if gpus(wc) else None,
        "gpu_model": gpu_model,
    }


def scaled(base: int, attempt: int, cap: int | None = None) -> int:
    """``base * attempt`` (attempt capped at ``cap``): resources that grow on each retry."""
    return int(base) * (min(attempt, cap) if cap else attempt)


# ------------------------------------------------------------------------------ training


def train_resources(resources: Mapping[str, Any], experiment: Mapping[str, Any]) -> dict:
    """``resources.train`` overridden by ``experiments.<name>.resources``, with the geometry.

    Returns ``threads``, ``mem_mb`` (per node), ``runtime`` (minutes, attempt 1), ``gpu`` (GPUs
    per node), ``nodes``, ``devices`` (ranks per node: the GPUs, or CPU processes when ``gpu`` is
    0), ``world`` (= devices x nodes) and ``stop_margin_s`` (None: the train stage's default).
    """
    base = dict(resources.get("train", {}))
    over = dict(experiment.get("resources", {}) or {})
    unknown = sorted(set(over) - set(TRAIN_KEYS))
    if unknown:
        raise ClusterConfigError(
            f"experiments.*.resources: unknown key(s) {unknown}; allowed: {list(TRAIN_KEYS)}"
        )
    r = {**base, **over}
    gpu = int(r.get("gpu", 0))
    nodes = int(r.get("nodes", 1))
    devices = int(r.get("devices", max(gpu, 1)))
    if gpu > 0 and devices != gpu:
        raise ClusterConfigError(
            f"resources: devices={devices} but gpu={gpu}: on GPUs there is one rank per GPU "
            "(leave devices out; it only sets CPU processes when gpu is 0)"
        )
    if nodes < 1 or devices < 1:
        raise ClusterConfigError(f"resources: nodes ({nodes}) and devices ({devices}) must be >= 1")
    if nodes > 1 and devices < 2:
        raise ClusterConfigError(
            f"resources: nodes={nodes} with {devices} rank per node: multi-node training starts "
            "one rank per GPU with srun and needs at least 2 GPUs per node (sbatch "
            "--ntasks-per-node > 1); use 2+ GPUs per node or one node"
        )
    threads = int(r.get("threads", 1))
    runtime = int(r.get("runtime", 60))
    margin = r.get("stop_margin_s")
    if margin is not None and not 0 < float(margin) < runtime * 60:
        raise ClusterConfigError(
            f"resources: stop_margin_s={margin} must lie between 0 and the runtime "
            f"({runtime} min = {runtime * 60} s)"
        )
    return {
        "threads": threads,
        "mem_mb": int(r.get("mem_mb", 8000)),
        "runtime": runtime,
        "gpu": gpu,
        "nodes": nodes,
        "devices": devices,
        "world": devices * nodes,
        "stop_margin_s": None if margin is None else float(margin),
    }


def train_slurm_resources(tr: Mapping[str, Any]) -> dict[str, Any]:
    """The SLURM resources of a training job (None = not set) from :func:`train_resources`.

    One node: ``gpu`` (``--gpus``, all on that node) and ``nodes=1``; the jobstep's ``srun -n1``
    gets the node's CPUs (``threads``) and GPUs. Several nodes (the MPI path): ``mpi="srun"``,
    ``nodes``, ``tasks_per_node`` = ranks per node, ``gres=gpu[:model]:G`` per node and
    ``cpus_per_task`` = threads per rank; ``gpu`` stays unset (``--gpus`` would be a job total).
    """
    if tr["nodes"] == 1:
        return {"gpu": tr["gpu"], "nodes": 1, "mpi": None, "tasks_per_node": None,
                "gres": None, "cpus_per_task": None}
    gres = None
    if tr["gpu"]:
        model = env_setting("REPRO_GPU_MODEL")
        gres = f"gpu:{model}:{tr['gpu']}" if model else f"gpu:{tr['gpu']}"
    return {
        "gpu": None,
        "nodes": tr["nodes"],
        "mpi": "srun",
        "tasks_per_node": tr["devices"],
        "gres": gres,
        "cpus_per_task": max(tr["threads"] // tr["devices"], 1),
    }


def train_launcher(tr: Mapping[str, Any]) -> str:
    """Shell prefix that starts the training ranks: empty on one node (Lightning spawns them).

    On several nodes ``srun`` starts one task per GPU on every node, spelling out the geometry
    (the jobstep stripped the inherited ``SLURM_*`` settings); Lightning's SLURM environment then
    reads ranks from ``SLURM_PROCID``/``SLURM_LOCALID``/``SLURM_NODEID``.
    """
    if tr["nodes"] == 1:
        return ""
    s = train_slurm_resources(tr)
    parts = [
        "srun",
        f"--nodes={tr['nodes']}",
        f"--ntasks-per-node={tr['devices']}",
        f"--cpus-per-task={s['cpus_per_task']}",
    ]
    if tr["gpu"]:
        parts.append(f"--gpus-per-node={tr['gpu']}")
    parts.append("--kill-on-bad-exit=1")
    return " ".join(parts) + " "


def logging_env(logging: Mapping[str, Any]) -> str:
    """Environment assignments of the config's ``logging`` block for the train stage's command:
    ``REPRO_PROGRESS_S=<s> REPRO_LOGGERS=<names> `` (read by :mod:`repro.progress`); a logger whose
    package is not installed fails here, when the DAG is built, naming the package."""
    from repro.progress import LoggerUnavailable, check_loggers

    names = [name for name in ("tensorboard", "wandb") if logging.get(name)]
    try:
        check_loggers(names, "config logging")
    except LoggerUnavailable as err:
        raise ClusterConfigError(str(err)) from None
    out = f"REPRO_PROGRESS_S={float(logging.get('progress_every_s', 60)):g} "
    if names:
        out += f"REPRO_LOGGERS={','.join(names)} "
    return out


def train_gpus(tr: Mapping[str, Any]) -> int:
    """GPUs of a training job in total (for the partition choice and the ``gpu`` cap)."""
    return tr["gpu"] * tr["nodes"]


def check_train_resources(resources: Mapping[str, Any], experiments: Mapping[str, Any]) -> None:
    """Every experiment's training resources are consistent (errors name the experiment)."""
    for name, exp in experiments.items():
        try:
            train_resources(resources, exp)
        except ClusterConfigError as err:
            raise ClusterConfigError(f"experiments.{name}: {err}") from None


class Jobs:
    """Resource callables for the rules, bound to the config and its catalogue.

    ``lookup(stage, key, default)`` reads ``resources.<stage>.<key>`` (``Catalogue.resource``),
    ``experiments`` are the resolved experiments and ``metrics_for(dataset, experiment, sampler,
    nfe, draw)`` gives a score job's metrics JSON (``Catalogue.metrics_for``). Every method
    returns what a rule's ``input:``/``resources:``/``threads:`` entry takes.
    """

    def __init__(
        self,
        resources: Mapping[str, Any],
        experiments: Mapping[str, Any],
        lookup: Callable[[str, str, Any], Any],
        metrics_for: Callable[..., str],
        logging: Mapping[str, Any] | None = None,
    ) -> None:
        self.resources, self.experiments, self.lookup = resources, experiments, lookup
        self.metrics_for = metrics_for
        self.train_env = logging_env(logging or {})

    # -- every stage: memory and time grow with the attempt
    def mem(self, stage: str, default: int) -> Callable[..., int]:
        return lambda wc, attempt: scaled(self.lookup(stage, "mem_mb", default), attempt)

    def runtime(self, stage: str, default: int) -> Callable[..., int]:
        return lambda wc, attempt: scaled(self.lookup(stage, "runtime", default), attempt)

    # -- training: per experiment
    def train(self, wc: Any) -> dict:
        return train_resources(self.resources, self.experiments[wc.experiment])

    def train_threads(self, wc: Any) -> int:
        return self.train(wc)["threads"]

    def train_mem(self, wc: Any, attempt: int) -> int:
        return scaled(self.train(wc)["mem_mb"], attempt)

    def train_runtime(self, wc: Any, attempt: int) -> int:
        """Twice the runtime from the second attempt on: each attempt resumes the last."""
        return scaled(self.train(wc)["runtime"], attempt, cap=2)

    def train_slurm(self, key: str) -> Callable[[Any], Any]:
        return lambda wc: train_slurm_resources(self.train(wc))[key]

    def train_launcher(self, wc: Any) -> str:
        """:func:`train_launcher` after ``REPRO_JOB_GPUS=<GPUs>`` (the job's GPUs, read by
        :mod:`repro.gpu_slots` on local machines) and the config's ``logging`` settings
        (:func:`logging_env`); a resource, so never a reason to retrain."""
        tr = self.train(wc)
        return f"{self.train_env}REPRO_JOB_GPUS={train_gpus(tr)} " + train_launcher(tr)

    def train_stop_margin(self, wc: Any) -> int:
        """``--stop-margin-s`` of the job (0: the train stage's default margin)."""
        return int(self.train(wc)["stop_margin_s"] or 0)

    def train_site(self) -> dict[str, Callable[..., Any]]:
        return site_resources(
            lambda wc: train_gpus(self.train(wc)),
            model_via_gpus=lambda wc: self.train(wc)["nodes"] == 1,
        )

    # -- sampling-like stages: one GPU count for the stage
    def stage_gpu(self, stage: str) -> int:
        return int(self.lookup(stage, "gpu", 0))

    def stage_site(self, stage: str) -> dict[str, Callable[..., Any]]:
        return site_resources(lambda wc: self.stage_gpu(stage))

    # -- scoring: GPUs only for metrics that run a model
    def score_metrics(self, wc: Any) -> str:
        return self.metrics_for(wc.dataset, wc.experiment, wc.sampler, int(wc.nfe), wc.draw)

    def score_gpu(self, wc: Any) -> int:
        return score_gpus(self.score_metrics(wc), self.stage_gpu("score"))

    def score_hub_inputs(self, wc: Any) -> list[str]:
        return metric_hub_inputs(self.score_metrics(wc))

    def score_site(self) -> dict[str, Callable[..., Any]]:
        return site_resources(self.score_gpu)


# ------------------------------------------------------------------------------ scoring


def score_gpus(metrics_json: str, stage_gpu: int) -> int:
    """``stage_gpu`` when some metric of the job runs a neural model (the registry's
    :func:`repro.metrics.needs_gpu`) on ``device`` auto/cuda."""
    from repro.metrics import needs_gpu

    metrics = json.loads(metrics_json)
    for cfg in metrics.values():
        if needs_gpu(cfg.get("kind", "")) and str(cfg.get("device", "auto")) != "cpu":
            return int(stage_gpu)
    return 0
