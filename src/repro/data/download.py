"""Stage ``download_dataset``: save the pinned hub revision of a dataset's hub splits to disk.

Usage::

    python -m repro.data.download --dataset NAME --config-json JSON --out resources/datasets/NAME

Only for datasets read (at least partly) from the hub — :func:`repro.data.needs_download`. Calls
``datasets.load_dataset(id, name, revision=<pinned>, split=...)`` for every source split not
covered by ``local`` and writes a ``save_to_disk`` folder atomically, plus ``repro_source.json``
(id, requested revision, resolved commit SHA, rows per split). Offline (``HF_HUB_OFFLINE`` /
``HF_DATASETS_OFFLINE``, or no route to the hub) it fails at once, exit code 2, with a message
that shows the ``local:`` override to use instead.
"""

from __future__ import annotations

import json
import sys

from repro.io import run_cli, stage_parser

from .config import parse_config
from .hub import download_dataset
from .prepare import read_config_arg


def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("repro.data.download", __doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--config-json", required=True, help="the dataset's config as JSON, or @file")
    ap.add_argument("--out", required=True, help="e.g. resources/datasets/NAME")
    args = ap.parse_args(argv)
    def body() -> None:
        dc = parse_config(args.dataset, read_config_arg(args.config_json))
        if dc.hub is not None and not dc.hub.pinned:
            print(
                f"warning: {dc.hub.id} is registered at {dc.hub.revision!r}, not a commit SHA; "
                f"pin the resolved_sha recorded in {args.out}/repro_source.json",
                file=sys.stderr,
            )
        provenance = download_dataset(dc, args.out)
        print(json.dumps({"dataset": args.dataset, "out": args.out, **provenance}))

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
