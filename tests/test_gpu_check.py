"""``benchmarks/gpu_check.py`` (``make gpu-check``) on the CPU: the same code a GPU runs, at tiny
sizes, so the check is known to work before a GPU is ever lent.

One run of every part and every method: the stages really train, stop,
resume, sample and score; the report's rows, exit status, JSON and Markdown are checked. The
helpers that decide a verdict (shared noise, the hard-failure exit) are tested on their own.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(BENCH))  # the benchmarks import their helpers as `_common`
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(BENCH))


def test_cpu_run_of_every_part(gpu_check, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = gpu_check.main(["--device", "cpu", "--steps", "3", "--out-dir", str(out)])
    assert rc == 0
    res = json.loads((out / "gpu_check.json").read_text())
    rows = res["rows"]
    assert res["hard_failures"] == 0
    assert all(r["status"] == "PASS" for r in rows if r["hard"]), [
        r for r in rows if r["hard"] and r["status"] != "PASS"
    ]
    by = {}
    for r in rows:
        by.setdefault((r["part"], r["subject"]), []).append(r)
    for m in gpu_check.METHODS:
        runs = by[("runs", m)]
        # train (stop at step 1 with exit 75, resume to 3) and two sample + score rows
        assert [r["check"].split()[0] for r in runs] == ["train", "sample", "sample"]
        assert "resumed 1->3" in runs[0]["value"] and "float32" in runs[0]["value"]
        assert len(by[("agrees", m)]) == 2  # loss, tokens
        assert any(r["check"].startswith("sampler overhead") for r in by[("fast", m)])
    for m in gpu_check.THROUGHPUT:
        checks = [r["check"] for r in by[("fast", m)]]
        assert "Lightning overhead per step" in checks
        step = res["throughput"][m]
        assert step["lightning_step_s"] > 0 and step["plain_step_s"] > 0
    # every training job of the paper config has a row and a calibration entry (invalid on a CPU)
    cal = res["cost_calibration"]
    assert cal["valid"] is False and cal["gpu"] == "cpu"
    jobs = gpu_check.train_jobs(gpu_check.Catalogue(gpu_check.load_config(
        gpu_check.ROOT / "config" / "config.yaml")))
    assert {(j["dataset"], j["experiment"]) for j in cal["jobs"]} == set(jobs)
    assert all(math.isfinite(cal["seconds_per_step"][e][d]) for d, e in jobs)
    assert ("fits", "ar_1.5b @ finefineweb") in by
    md = (out / "gpu_check.md").read_text()
    assert md.count("\n| ") == len(rows) + 1  # header + one line per row
    assert not [p for p in out.iterdir() if p.name.startswith("work_")]  # work dir removed


def test_cuda_without_a_gpu_is_an_error(gpu_check, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit) as err:
        gpu_check.parse(["--device", "cuda"])
    assert err.value.code == 2
    assert "never falls back to the CPU" in capsys.readouterr().err


def test_hard_failure_exits_non_zero(gpu_check, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(gpu_check, "LOSS_RTOL", -1.0)  # no loss can agree
    argv = ["--device", "cpu", "--steps", "2", "--methods", "ar", "--parts", "runs,agrees",
            "--out-dir", str(tmp_path)]
    assert gpu_check.main(argv) == 1
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    failed = [r for r in res["rows"] if r["status"] == "FAIL"]
    assert [(r["part"], r["hard"]) for r in failed] == [("agrees", True)]


def test_cpu_noise_is_the_same_stream_whatever_the_generator(gpu_check) -> None:
    def draws(gen_seed: int):
        g = torch.Generator().manual_seed(gen_seed)
        a = torch.rand(3, 4, generator=g)
        b = torch.randn((2,), generator=g, dtype=torch.float64)
        c = torch.empty(5).uniform_(0.5, 1.0, generator=g)
        d = torch.randn_like(a)
        e = torch.multinomial(torch.ones(4), 2, generator=g)
        return a, b, c, d, e

    with gpu_check.cpu_noise(7):
        first = draws(0)
    with gpu_check.cpu_noise(7):
        second = draws(12345)  # the caller's generator is ignored
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x, y)
    assert first[1].dtype == torch.float64 and bool((first[2] >= 0.5).all())
    with gpu_check.cpu_noise(8):
        other = draws(0)
    assert not torch.equal(first[0], other[0])
    # restored afterwards: the generator counts again
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    assert not torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
