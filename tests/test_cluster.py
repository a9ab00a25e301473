"""Unit tests of :mod:`repro.cluster`: the ``fetch`` command line of rule download_hub."""

from __future__ import annotations

from repro import cluster


def test_fetch_cli_passes_its_flags_and_reports_the_snapshot(monkeypatch, capsys):
    calls = []

    def fake_fetch(repo_id, revision, kind, out, cache_dir):
        calls.append((repo_id, revision, kind, out, cache_dir))
        return {"id": repo_id, "revision": revision, "commit": "abc123", "files": ["a", "b"]}

    monkeypatch.setattr(cluster, "fetch", fake_fetch)
    argv = ["fetch", "--id", "gpt2", "--revision", "main", "--kind", "tokenizer", "--out", "m.json"]
    assert cluster.main(argv) == 0
    assert calls == [("gpt2", "main", "tokenizer", "m.json", "resources/hf/hub")]
    assert "fetched gpt2@main (commit abc123): 2 files" in capsys.readouterr().out


def test_fetch_cli_names_the_repository_it_cannot_fetch(monkeypatch, capsys):
    def offline(*args):
        raise ConnectionError("no network")

    monkeypatch.setattr(cluster, "fetch", offline)
    argv = ["fetch", "--id", "gpt2", "--revision", "main", "--kind", "model", "--out", "m.json"]
    assert cluster.main(argv) == 1
    err = capsys.readouterr().err
    assert "cannot fetch gpt2@main" in err and "ConnectionError: no network" in err
