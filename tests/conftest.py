"""Session-wide fixtures: the smoke DAG, built once and shared by every test that reads it.

``smoke_dag`` is ``make demo``'s DAG (``config/smoke.yaml``, the local profile, 2 cores) run on a
private copy of the project. The smoke-output tests, the learning claims on the smoke tasks and the
report tests read it; none of them trains a model of their own for the same claim. Only tests
marked ``slow`` may ask for it.
"""

from __future__ import annotations

import pytest

from tests.workflow.conftest import Project

#: seconds allowed for the smoke DAG (measured ~5 min on an idle 2-core machine; CI is slower)
SMOKE_TIMEOUT = 1800


@pytest.fixture(scope="session")
def smoke_dag(tmp_path_factory) -> Project:
    project = Project.copy(tmp_path_factory.mktemp("smoke"))
    project.snakemake("--profile", "workflow/profiles/local", "--cores", "2",
                      "all", "--configfile", "config/smoke.yaml", timeout=SMOKE_TIMEOUT)
    return project


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop the warm workers the tests' Snakemake runs started (repro.warm), none outlives them;
    workers of projects outside the session's temporary directory (a `make demo` beside) stay."""
    from repro import warm

    warm.stop_workers(under=session.config._tmp_path_factory.getbasetemp())
