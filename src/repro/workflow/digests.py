"""Code and environment digests: what each rule's ``code``/``env`` params hash.

Staleness contract (docs/pipeline.md §1): a rule's params carry a content digest of the package
files it runs, so an edit reruns exactly the jobs whose code changed and ``touch`` reruns nothing
(digests hash names and contents, never mtimes). A stage's files are its entry modules
(:data:`STAGE_SOURCES`) plus every ``repro`` module they import, transitively
(:func:`import_closure`, read from the source with :mod:`ast`, lazy imports included).
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = PACKAGE_DIR.parent.parent

#: Entry modules of each stage (relative to src/repro). A stage's code digest covers these and
#: every ``repro`` module they import, transitively (see :func:`import_closure`); the method module
#: of an experiment is added for train/sample. ``methods/__init__.py`` (the registry) is left out:
#: registering a new method must not retrain the others.
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "download": ("data/download.py",),
    "prepare": ("data/prepare.py",),
    "tokenizer": ("tokenization/vocab.py",),
    "tokenize": ("tokenization/__main__.py",),
    "train": ("train/__main__.py",),
    "sample": ("sample.py",),
    "score": ("score.py",),
    "mbr": ("mbr.py",),
    "judge": ("judge.py",),
    "table": ("report/tables.py",),
    "figure": ("report/figures.py",),
    "export_embeddings": ("export_embeddings.py",),
    "analysis": ("analysis.py",),
}
# progress.py: log lines, bars and loggers only; editing it never changes a result.
# workflow/: the DAG's own code (paths, params, checks) is never run by a job.
_NOT_TRACKED = {"methods/__init__.py", "progress.py"}
_NOT_TRACKED_DIRS = ("workflow/",)


@cache
def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _module_file(dotted: str) -> str | None:
    """``repro.a.b`` -> ``a/b.py`` or ``a/b/__init__.py`` (relative to src/repro), if it exists."""
    parts = dotted.split(".")[1:]
    for rel in ("/".join(parts) + ".py", "/".join([*parts, "__init__.py"])):
        if rel != ".py" and (PACKAGE_DIR / rel).is_file():
            return rel
    return None


def _imported_names(node: ast.AST, package: list[str]) -> list[str]:
    """Dotted names one ``import``/``from … import`` statement may load (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = package[: len(package) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        return [base] + [f"{base}.{a.name}" for a in node.names]
    return []


@cache
def direct_imports(rel: str) -> tuple[str, ...]:
    """Package files imported anywhere in ``rel`` (top level or inside functions)."""
    tree = ast.parse((PACKAGE_DIR / rel).read_text(encoding="utf-8"), filename=rel)
    package = ["repro", *Path(rel).parent.parts]
    found: set[str] = set()
    for node in ast.walk(tree):
        for name in _imported_names(node, package):
            if name == "repro" or not name.startswith("repro."):
                continue
            target = _module_file(name)
            if target is not None and target != rel:
                found.add(target)
    return tuple(sorted(found))


def _tracked(rel: str) -> bool:
    return rel not in _NOT_TRACKED and not rel.startswith(_NOT_TRACKED_DIRS)


def import_closure(*entries: str) -> list[str]:
    """``entries`` plus every ``repro`` module they import, transitively (registry excluded)."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        rel = todo.pop()
        if rel in seen or not _tracked(rel):
            continue
        seen.add(rel)
        todo.extend(direct_imports(rel))
    return sorted(seen)


def source_digest(*patterns: str) -> str:
    """Content digest of package files (globs relative to ``src/repro``), 16 hex chars.

    Hashes names and contents, never mtimes: ``touch`` changes nothing, an edit changes it.
    """
    files: set[Path] = set()
    for pattern in patterns:
        files.update(p for p in PACKAGE_DIR.glob(pattern) if p.is_file())
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        h.update(file_sha(path).encode())
    return h.hexdigest()[:16]


@cache
def stage_digest(stage: str) -> str:
    """Content digest of the package files one stage runs (see :data:`STAGE_SOURCES`)."""
    return source_digest(*import_closure(*STAGE_SOURCES[stage]))


@cache
def method_digest(method: str, stage: str) -> str:
    """:func:`stage_digest` of ``stage`` with the files of ``method`` added (train, sample, …)."""
    from repro.methods import method_source_files

    return source_digest(*import_closure(*STAGE_SOURCES[stage], *method_source_files(method)))


def lock_digest() -> str:
    """Digest of the pinned environment: library versions change tokenisation and scores."""
    lock = REPO_DIR / "envs" / "requirements.lock"
    return file_sha(lock)[:16] if lock.exists() else "no-lock"
