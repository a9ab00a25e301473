"""The distributed world of a training: Lightning's cluster environment and checks of the ranks.

``docs/pipeline.md`` §3.1: a run asks for ``devices`` ranks on each of ``num_nodes`` nodes; SLURM
may start one task per device (``srun``) or one task that spawns the ranks itself. The checks here
stop a run whose world differs from the one asked for (the silent trap: one rank training on a
shard of the data) before or when training starts. torch and Lightning are imported on first use.
"""

from __future__ import annotations

import os

from repro.io import InputError

from .config import on_cuda


def cluster_plugins(devices: int, num_nodes: int) -> list:
    """Cluster-environment plugins for the Trainer (``docs/pipeline.md`` §3.1).

    * ``srun`` launched one task per device (``SLURM_NTASKS == devices * num_nodes``, the MPI
      path): Lightning's :class:`SLURMEnvironment`, without signal-based auto-requeue.
    * Several devices inside the jobstep's ``srun -n1``: a :class:`LightningEnvironment`, so
      Lightning spawns the ranks itself (otherwise SLURM detection would silently run one rank
      on a shard of the data).
    * One device: SLURM environment if under SLURM, else Lightning's default detection.
    """
    from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment

    try:
        ntasks = int(os.environ.get("SLURM_NTASKS", "0") or 0)
    except ValueError:
        raise InputError(f"SLURM_NTASKS={os.environ['SLURM_NTASKS']!r} is not an integer") from None
    world = devices * num_nodes
    if ntasks and ntasks == world:
        return [SLURMEnvironment(auto_requeue=False)]
    if ntasks > 1:
        raise InputError(
            f"SLURM_NTASKS={ntasks} but --devices {devices} x --num-nodes {num_nodes} = {world}: "
            "launch one task per device (resources tasks_per_node) or pass matching "
            "--devices/--num-nodes"
        )
    if world > 1:
        if num_nodes > 1:
            raise InputError(
                "multi-node training needs resources mpi='srun' + tasks_per_node so that srun "
                "launches one task per GPU (see docs/pipeline.md §3.3)"
            )
        return [LightningEnvironment()]
    return [SLURMEnvironment(auto_requeue=False)] if ntasks else []


def check_visible_gpus(accelerator: str, devices: int, cuda_count: int | None = None) -> None:
    """Fail clearly when a GPU run is asked for more devices than this process can see."""
    import torch

    if not on_cuda(accelerator):
        return
    seen = torch.cuda.device_count() if cuda_count is None else cuda_count
    if seen < devices:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        raise InputError(
            f"--devices {devices} but this process sees {seen} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={visible}): request gpu={devices} with nodes=1 for the job "
            "(experiments.<name>.resources or resources.train) or lower the device count"
        )


def check_world(
    *,
    devices: int,
    num_nodes: int,
    world_size: int,
    global_rank: int,
    local_rank: int,
    node_rank: int,
    n_rows: int,
    batch_size: int,
    env: dict[str, str] | None = None,
) -> str:
    """Check the distributed world against the one asked for; return the line to log.

    Raises :class:`InputError` when ``world_size`` is not ``devices x num_nodes`` — the silent
    trap of a job that runs one rank on a shard of the data (docs/pipeline.md §3.1) — or when SLURM
    started a different number of tasks or nodes than that.
    """
    env = dict(os.environ) if env is None else env
    expected = devices * num_nodes
    if world_size != expected:
        raise InputError(
            f"distributed world mismatch: Lightning runs {world_size} rank(s) but --devices "
            f"{devices} x --num-nodes {num_nodes} = {expected}; each rank would train on "
            f"1/{world_size} of every global batch instead of 1/{expected}. Check the job's "
            "resources (gpu, nodes) and that the rule does not wrap python in its own srun"
        )
    ntasks = env.get("SLURM_NTASKS")
    if ntasks and int(ntasks) not in (1, expected):
        raise InputError(
            f"SLURM started {ntasks} tasks but the run expects {expected} rank(s) "
            f"({devices} per node x {num_nodes} node(s))"
        )
    nnodes = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
    if nnodes and num_nodes > 1 and int(nnodes) != num_nodes:
        raise InputError(f"SLURM allocated {nnodes} node(s) but --num-nodes is {num_nodes}")
    global_batch = batch_size * world_size
    batches = -(-n_rows // global_batch)
    return (
        f"world: world_size={world_size} global_rank={global_rank} local_rank={local_rank} "
        f"node_rank={node_rank} devices={devices} num_nodes={num_nodes} "
        f"slurm_job_id={env.get('SLURM_JOB_ID', '-')} slurm_ntasks={ntasks or '-'} "
        f"train_rows={n_rows} global_batch={global_batch} batches_per_epoch={batches} "
        f"rows_per_rank_per_epoch={batches * batch_size}"
    )

