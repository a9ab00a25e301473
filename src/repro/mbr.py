"""Stage ``mbr_select``: Minimum-Bayes-Risk selection over k samples per source (DiffuSeq).

Usage::

    python -m repro.mbr --samples …/nfe2000/seed0.jsonl … …/nfe2000/seed9.jsonl \\
        --out …/nfe2000/mbr10.jsonl

DiffuSeq's rule (``scripts/eval_seq2seq.py --mbr``, docs/methods.md §1.8): for each source, among
its k candidates c_1..c_k (one per samples file, rows aligned by ``id``) pick the one maximising
Σ_{j≠i} BLEU(hyp = c_i, ref = c_j), NLTK ``sentence_bleu`` with ``SmoothingFunction().method4`` on
``str.split()`` tokens (:class:`repro.metrics.diversity.NltkBleu`). Ties go to the first candidate
in the order of the files as given (numpy ``argmax``): DiffuSeq globs its files and sorts them
lexicographically, so a caller reproducing it passes the files in that order (the workflow passes
seed0 … seed{k−1}, which is lexicographic for k ≤ 10).

Cleaning (``--clean``, default ``diffuseq``): DiffuSeq deletes ``[CLS]``, ``[SEP]``, ``[PAD]`` from
each candidate before selecting; our hypotheses are clean decoded text, so this only matters for
hypotheses that still carry those strings. The selection uses the cleaned text; the row written is
the chosen candidate's row unchanged (its own ``hypothesis``, ``hypothesis_ids``, ``sampler``,
``nfe``), with ``seed`` = the chosen candidate's seed, ``wall_seconds`` = the sum over the k
candidates (the cost of producing this output), and ``"mbr": {"k", "chosen", "seeds"}`` (``chosen``
= the index of the chosen file in the order given, ``seeds`` = every candidate's seed in that
order). Rows follow the first file's order. The output is a samples file like any other and is
scored by ``score_samples``; it is written atomically.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Sequence

from repro.io import InputError, log_to_stderr, run_cli, stage_parser, write_jsonl
from repro.metrics.diversity import NltkBleu
from repro.metrics.text import CLEAN_CHOICES, clean_text
from repro.score import read_aligned

log = logging.getLogger("repro.mbr")

#: fields every candidate row needs
FIELDS = ("id", "source", "reference", "hypothesis", "seed", "wall_seconds")


def mbr_utilities(candidates: Sequence[str], bleu: NltkBleu | None = None) -> list[float]:
    """Σ_{j≠i} BLEU(hyp = c_i, ref = c_j) for every candidate i (already cleaned text).

    Summed as DiffuSeq does — ``np.sum`` over the row of the k×k BLEU matrix with a zero
    diagonal — so near-ties round the same way.
    """
    import numpy as np

    bleu = bleu or NltkBleu()
    tokens = [c.split() for c in candidates]
    k = len(tokens)
    matrix = [[0.0 if j == i else bleu(tokens[i], tokens[j]) for j in range(k)] for i in range(k)]
    return [float(u) for u in np.sum(np.asarray(matrix, dtype=np.float64), axis=-1)]


def mbr_index(candidates: Sequence[str], bleu: NltkBleu | None = None) -> int:
    """Index of the MBR candidate; ties → the first (lowest index), as ``np.argmax``."""
    utilities = mbr_utilities(candidates, bleu)
    return utilities.index(max(utilities))


def _check_consistent(groups: Sequence[Sequence[dict]], paths: Sequence[str]) -> None:
    """Every file must pair each id with the same source and reference, and carry numbers."""
    for s, rows in enumerate(groups):
        for i, row in enumerate(rows):
            first = groups[0][i]
            for name in ("source", "reference"):
                if row[name] != first[name]:
                    raise InputError(
                        f"{paths[s]}: sample {row['id']!r} has a different {name} than in "
                        f"{paths[0]}; MBR candidates must be samples of the same dataset split "
                        "(seeds of one sampling run)"
                    )
            w = row["wall_seconds"]
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
                raise InputError(
                    f"{paths[s]}: sample {row['id']!r}: wall_seconds must be a finite number, "
                    f"got {w!r}"
                )


def mbr_select(
    groups: Sequence[Sequence[dict]], paths: Sequence[str], clean: str = "diffuseq"
) -> list[dict]:
    """The MBR rows of k aligned candidate lists (``groups[s][i]``: file s, source i)."""
    if clean not in CLEAN_CHOICES:
        raise InputError(f"--clean {clean!r} is not one of {', '.join(CLEAN_CHOICES)}")
    if len(groups) < 2:
        raise InputError(
            f"MBR needs k >= 2 samples files of the same sources (one per seed), got {len(groups)}"
        )
    _check_consistent(groups, paths)
    bleu = NltkBleu()
    out = []
    for i in range(len(groups[0])):
        rows = [g[i] for g in groups]
        chosen = mbr_index([clean_text(r["hypothesis"], clean) for r in rows], bleu)
        row = dict(rows[chosen])  # its own seed, hypothesis, ids, sampler, nfe
        row["wall_seconds"] = math.fsum(r["wall_seconds"] for r in rows)
        row["mbr"] = {"k": len(rows), "chosen": chosen, "seeds": [r["seed"] for r in rows]}
        out.append(row)
    if bleu.n_warnings:
        log.info("NLTK emitted %d warnings during selection", bleu.n_warnings)
    return out


def run(
    samples: Sequence[str | os.PathLike], out: str | os.PathLike, clean: str = "diffuseq"
) -> list[dict]:
    """Read the k candidate files, select, write ``out`` atomically; returns the rows."""
    paths = [str(p) for p in samples]
    start = time.perf_counter()
    groups = read_aligned(paths, FIELDS)
    rows = mbr_select(groups, paths, clean)
    write_jsonl(out, rows)
    counts = [sum(r["mbr"]["chosen"] == s for r in rows) for s in range(len(paths))]
    log.info(
        "MBR over k=%d files, %d sources -> %s (%.1f s); chosen per file: %s",
        len(paths),
        len(rows),
        out,
        time.perf_counter() - start,
        counts,
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("repro.mbr", __doc__)
    parser.add_argument(
        "--samples",
        required=True,
        nargs="+",
        help="k >= 2 samples files of the same sources (one per seed); ties go to the first",
    )
    parser.add_argument("--out", required=True, help="MBR samples JSON Lines file to write")
    parser.add_argument(
        "--clean",
        default="diffuseq",
        choices=CLEAN_CHOICES,
        help="cleaning before selection (default: diffuseq, as DiffuSeq)",
    )
    args = parser.parse_args(argv)
    log_to_stderr()
    return run_cli(lambda: run(args.samples, args.out, args.clean))


if __name__ == "__main__":
    sys.exit(main())
