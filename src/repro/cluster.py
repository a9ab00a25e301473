"""Fetch a hub repository into the project cache: ``python -m repro.cluster fetch`` (rule
download_hub, on the login node, since compute nodes are offline).

The hub helpers themselves (which repositories the config reads, the offline shell prefix, the
download) live in :mod:`repro.workflow.hub`; SLURM resources per job in
:mod:`repro.workflow.resources`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from repro.io import stage_parser
from repro.workflow.hub import HF_CACHE, fetch


def main(argv: Sequence[str] | None = None) -> int:
    p = stage_parser("repro.cluster", __doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download a hub repository into the project cache")
    f.add_argument("--id", required=True)
    f.add_argument("--revision", required=True)
    f.add_argument("--kind", required=True, choices=["tokenizer", "model"])
    f.add_argument("--cache-dir", default=HF_CACHE)
    f.add_argument("--out", required=True, help="marker file (JSON manifest)")
    args = p.parse_args(argv)
    try:
        m = fetch(args.id, args.revision, args.kind, args.out, args.cache_dir)
    except Exception as err:  # network, auth, unknown repo: one clear line in the rule's log
        print(
            f"cannot fetch {args.id}@{args.revision} from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Run this rule on a machine with network access "
            "(the login node: it is a local rule) or point the config at a local path.",
            file=sys.stderr,
        )
        return 1
    print(f"fetched {m['id']}@{m['revision']} (commit {m['commit']}): {len(m['files'])} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
