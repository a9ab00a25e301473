"""`make report` on the smoke DAG of the session (built once, tests/conftest.py): every table and
figure of the catalogue is in the page, nothing is listed as missing, every metric has its variant."""

from __future__ import annotations

import csv
import html
import re

import pytest

from repro.report.html_report import main

from .conftest import load_smoke

pytestmark = pytest.mark.slow


def test_report_of_the_built_smoke_dag(smoke_dag, tmp_path):
    root = smoke_dag.root
    out = tmp_path / "report.html"
    rc = main(["--results", str(root / "results"), "--configfile",
               str(root / "config" / "smoke.yaml"), "--out", str(out)])
    assert rc == 0
    page = out.read_text(encoding="utf-8")
    cfg = load_smoke()
    for table in cfg["tables"]:
        assert f'id="table-{table}"' in page, table
    for figure in cfg["figures"]:
        assert f'id="figure-{figure}"' in page and 'download="' + figure + '.pdf"' in page, figure
    assert "<h2>Not built yet</h2>" not in page
    assert f"{len(cfg['tables'])} of {len(cfg['tables'])} catalogue tables" in page
    # every (metric, variant) of every table CSV is a row of the variants section
    variants = page.split('<h2 id="variants">')[1].split('<h2 id="config">')[0]
    for table in cfg["tables"]:
        with open(root / "results" / "tables" / f"{table}.csv", newline="") as fh:
            for rec in csv.DictReader(fh):
                if "variant" in rec:
                    cell = re.escape(html.escape(rec["variant"], quote=True))
                    assert re.search(rf"<td>{re.escape(rec['metric'])}</td><td>{cell}</td>",
                                     variants), (table, rec["metric"], rec["variant"])
