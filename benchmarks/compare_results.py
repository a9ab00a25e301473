"""Are two built ``results/`` trees the same, measured times aside?

    python benchmarks/compare_results.py OLD/results NEW/results

For checking that a change of code changes no output (a refactoring, a move of modules): build
the same config with the old and the new code (same ``PYTHONHASHSEED``, which every job's shell
sets), then compare. Every file is compared byte for byte. JSON and JSON Lines files that differ
are compared again without the fields that are measured times (``wall_seconds``, …), and a table
CSV without the cells of its ``wall_seconds`` metric. The exit status is 1 when any file differs
beyond measured times, or when a file is in one tree only; Lightning's ``_work/`` and the HTML
report are skipped.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import json
import sys
from pathlib import Path

#: keys of measured times in samples, scores and judge records
TIME_KEYS = frozenset({"wall_seconds", "wall_seconds_total", "train_seconds"})
SKIP_SUFFIXES = (".html",)


def _strip(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIME_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _without_times(path: Path) -> object:
    """The file's content with measured times left out (None: not a kind that has them)."""
    text = path.read_text()
    if path.suffix == ".json":
        return _strip(json.loads(text))
    if path.suffix == ".jsonl":
        return [_strip(json.loads(line)) for line in text.splitlines() if line.strip()]
    if path.parent.name == "tables" and path.suffix in (".csv", ".md"):
        csv_text = text if path.suffix == ".csv" else path.with_suffix(".csv").read_text()
        rows = list(csv.DictReader(csv_text.splitlines()))
        timed = {r["column"] for r in rows if r.get("metric") == "wall_seconds"}
        if path.suffix == ".md":
            return _markdown_without(text, timed)
        for row in rows:
            if row["column"] in timed:
                row["ours"] = row["ours_std"] = ""
        return rows
    return None


def _markdown_without(text: str, columns: set[str]) -> list[str]:
    """The lines of a Markdown table view with the cells of ``columns`` (by header) blanked."""
    out, blank = [], set()
    for line in text.splitlines():
        cells = line.split("|")
        if line.startswith("|") and not blank and any(c.strip() in columns for c in cells):
            blank = {i for i, c in enumerate(cells) if c.strip() in columns}
        elif line.startswith("|") and blank and not set(line) <= set("|- :"):
            cells = ["" if i in blank else c for i, c in enumerate(cells)]
        elif not line.startswith("|"):
            blank = set()
        out.append("|".join(cells))
    return out


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "_work" not in p.parts and not p.name.endswith(SKIP_SUFFIXES)
    }


def compare(old: Path, new: Path) -> dict[str, list[str]]:
    """Files by verdict: ``identical`` (bytes), ``times`` (only measured times differ),
    ``differ``, ``only_old``, ``only_new``."""
    a, b = _files(old), _files(new)
    out: dict[str, list[str]] = {
        "identical": [], "times": [], "differ": [],
        "only_old": sorted(a - b), "only_new": sorted(b - a),
    }
    for rel in sorted(a & b):
        x, y = old / rel, new / rel
        if filecmp.cmp(x, y, shallow=False):  # (chunked: checkpoints are large)
            out["identical"].append(rel)
            continue
        stripped = _without_times(x)
        same = stripped is not None and stripped == _without_times(y)
        out["times" if same else "differ"].append(rel)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    args = p.parse_args(argv)
    res = compare(args.old, args.new)
    n = sum(len(v) for v in res.values())
    print(f"{n} files: {len(res['identical'])} byte-identical, {len(res['times'])} differ only in "
          f"measured times, {len(res['differ'])} differ, {len(res['only_old'])} only in "
          f"{args.old}, {len(res['only_new'])} only in {args.new}")
    for kind in ("times", "differ", "only_old", "only_new"):
        for rel in res[kind]:
            if kind != "times" or rel.startswith("tables/"):
                print(f"  {kind}: {rel}")
    return 1 if res["differ"] or res["only_old"] or res["only_new"] else 0


if __name__ == "__main__":
    sys.exit(main())
