"""Stage ``train_model``: train one method on one tokenized layout; write ``model.ckpt``.

Usage (one Snakemake job)::

    python -m repro.train --data results/tokenized/D/LAYOUT \\
        --out results/train/D/EXP/model.ckpt --config-json '{"method": "ar", "model": {...},
        "train": {"steps": 1000, ...}}' --threads 8 [--max-minutes M] \\
        [--accelerator auto|cpu|gpu] [--devices N] [--num-nodes N] [--stop-margin-s S] \\
        [--progress] [--progress-every-s S] [--loggers tensorboard,wandb]

Resumable state lives in ``results/train/D/EXP/_work/`` (Lightning ``last.ckpt`` + CSV logs) and is
always resumed. When ``--max-minutes`` (minus a safety margin, ``--stop-margin-s``) runs out before
``train.steps``, or on SIGTERM / SIGUSR1 (``scancel``, preemption, SLURM's warning signal), the job
saves ``_work/last.ckpt`` on the next optimizer step and exits with code 75; rerunning the same
command continues it (under Snakemake: the rule's ``retries``, with more runtime per attempt).
The distributed world (``--devices`` ranks on each of ``--num-nodes`` nodes) is checked and logged
when training starts; then a progress line (step/total, loss, tokens/s, ETA) every
``--progress-every-s`` seconds, a bar with ``--progress`` (:mod:`repro.progress`).
``model.ckpt`` is written atomically, only once training is complete. The machinery lives in
:mod:`repro.train.run` and the modules beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence

from repro.io import InputError, run_stage, stage_parser
from repro.progress import parse_loggers

from .logs import setup_logging
from .run import train

#: exit status of a run stopped by its time budget or by SIGTERM / SIGUSR1 (EX_TEMPFAIL): rerun to
#: continue
EXIT_INCOMPLETE = 75

log = logging.getLogger("repro.train")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = stage_parser("repro.train", __doc__)
    p.add_argument("--data", required=True, help="tokenized layout directory (meta.json, *.npy)")
    p.add_argument("--out", required=True, help="final checkpoint path (…/model.ckpt)")
    p.add_argument("--config-json", required=True, help='{"method": …, "model": {…}, "train": {…}}')
    p.add_argument(
        "--threads", type=int, default=1, help="CPUs of the job on this node (split among its ranks)"
    )
    p.add_argument("--max-minutes", type=float, default=None, help="job time limit (SLURM runtime)")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda"])
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument(
        "--stop-margin-s",
        type=float,
        default=None,
        help="stop this many seconds before --max-minutes runs out (0 or unset: 10%% of the "
        "job, 30 s to 10 min)",
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (default: when stderr is a terminal)")
    p.add_argument("--progress-every-s", type=float, default=None,
                   help="seconds between progress lines in the log (default: $REPRO_PROGRESS_S "
                   "or 60)")
    p.add_argument("--loggers", default=os.environ.get("REPRO_LOGGERS", ""),
                   help="loggers beside CSV: tensorboard, wandb (comma separated; default: "
                   "$REPRO_LOGGERS, set from the config's logging block)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    summaries: list[dict] = []

    def body() -> None:
        try:
            cfg = json.loads(args.config_json)
        except json.JSONDecodeError as err:
            raise InputError(f"--config-json is not valid JSON ({err})") from None
        summary = train(
            args.data,
            args.out,
            cfg,
            threads=args.threads,
            max_minutes=args.max_minutes,
            accelerator=args.accelerator,
            devices=args.devices,
            num_nodes=args.num_nodes,
            stop_margin_s=args.stop_margin_s or None,
            loggers=parse_loggers(args.loggers, "--loggers"),
            progress_every_s=args.progress_every_s,
            progress_bar=args.progress,
        )
        summaries.append(summary)

    code = run_stage(body, log)
    if code or summaries[0]["completed"]:
        return code
    summary = summaries[0]
    log.warning(
        "stopped at step %d of %d (%s): resumable state saved in the _work/ folder "
        "beside %s; rerun the same command to continue",
        summary["steps"],
        summary["target_steps"],
        summary["stopped_by"],
        args.out,
    )
    return EXIT_INCOMPLETE
