"""Unit tests of :mod:`repro.workflow.digests`: code digests follow content and imports."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.config_file import load_config_file
from repro.workflow import digests
from repro.workflow.catalogue import Catalogue

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke() -> dict:
    return load_config_file(REPO / "config" / "smoke.yaml")


def test_source_digest_tracks_content_not_mtime(tmp_path, monkeypatch):
    pkg = tmp_path / "repro"
    (pkg / "methods").mkdir(parents=True)
    (pkg / "methods" / "a.py").write_text("x = 1\n")
    (pkg / "methods" / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(digests, "PACKAGE_DIR", pkg)
    digests.file_sha.cache_clear()
    d0 = digests.source_digest("methods/a.py")
    both = digests.source_digest("methods/*.py")
    (pkg / "methods" / "a.py").touch()
    digests.file_sha.cache_clear()
    assert digests.source_digest("methods/a.py") == d0  # touch: same digest
    (pkg / "methods" / "b.py").write_text("y = 3\n")
    digests.file_sha.cache_clear()
    assert digests.source_digest("methods/a.py") == d0  # another file's edit: same digest
    assert digests.source_digest("methods/*.py") != both
    (pkg / "methods" / "a.py").write_text("x = 1  # edited\n")
    digests.file_sha.cache_clear()
    assert digests.source_digest("methods/a.py") != d0


def test_method_digest_is_per_method(smoke):
    c = Catalogue(smoke)
    files = digests.import_closure("train/__main__.py", "methods/base.py", "methods/ar.py")
    assert {"methods/ar.py", "models/transformer.py", "train/run.py"} <= set(files)
    assert "methods/__init__.py" not in files  # registering a method retrains nothing
    assert c.method_digest("ar", "train") == digests.source_digest(*files)
    assert c.method_digest("ar", "train") != c.method_digest("ar", "sample")


def test_import_closure_follows_absolute_relative_and_lazy_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "repro"
    for d in ("methods", "models", "metrics"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "methods" / "a.py").write_text(
        "from .shared import x\n"
        "def f():\n    from repro.models import net  # lazy import\n    return net\n")
    (pkg / "methods" / "shared.py").write_text("from ..metrics import m\nx = 1\n")
    (pkg / "models" / "net.py").write_text("import numpy\n")
    (pkg / "metrics" / "m.py").write_text("")
    (pkg / "methods" / "b.py").write_text("")
    monkeypatch.setattr(digests, "PACKAGE_DIR", pkg)
    digests.direct_imports.cache_clear()
    assert digests.import_closure("methods/a.py") == [
        "methods/a.py", "methods/shared.py", "metrics/__init__.py", "metrics/m.py",
        "models/__init__.py", "models/net.py"]
    digests.direct_imports.cache_clear()
