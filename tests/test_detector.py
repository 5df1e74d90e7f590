"""The leak harness goes red by itself on every planted bug (issue 10), and green without.

Each plant of :data:`loadtests.plants.PLANTS` is applied to a temporary copy of the packages;
a short, bounded ``python -m loadtests.run`` (a few seconds, a few users, one server worker,
its own free port on 127.0.0.1) runs against that copy, and must FAIL — showing the plant the
way the plant says (leaks, non-leak failures, or live values in ``/metrics`` after the load).
The unplanted checkout must PASS under the very same run.  All runs are made once per session
(two at a time) and shared by the assertions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtests.plants import PLANTS, Plant, planted_copy, render_table
from loadtests.summary import parse_summary
from tests.support import ROOT

HARNESS = ["--users", "14", "--duration", "4s", "--processes", "0", "--min-requests", "100",
           "--server-workers", "1"]
"""A short run: every probe class gets a user, the raw shapes cycle ~20 times."""
RUN_TIMEOUT = 60


@dataclass
class Run:
    code: int
    output: str

    @property
    def summary(self) -> dict[str, str]:
        return parse_summary(self.output)

    @property
    def metrics_failed(self) -> bool:
        return "live ctxlocal entries/contexts in /metrics after" in self.output

    def shows(self, caught_by: str) -> bool:
        summary = self.summary
        return {"leaks": int(summary.get("leaks", 0)) > 0,
                "failures": int(summary.get("other_failures", 0)) > 0,
                "metrics": self.metrics_failed}[caught_by]

    def describe(self) -> str:
        s = self.summary
        return (f"exit {self.code}, verdict {s.get('verdict')}, {s.get('requests')} requests, "
                f"{s.get('leaks')} leaks, {s.get('other_failures')} other failures, "
                f"/metrics {'FAIL' if self.metrics_failed else 'ok'}")


def _harness(root: Path, reports: Path) -> Run:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SERVER_", "LOCUST_"))}
    env["PYTHONPATH"] = str(root)
    proc = subprocess.run([sys.executable, "-m", "loadtests.run", *HARNESS,
                           "--reports", str(reports)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return Run(proc.returncode, proc.stdout + proc.stderr)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Run]:
    """``{plant name or "clean": Run}``, made two at a time."""
    base = tmp_path_factory.mktemp("plants")

    def one(plant: Plant | None) -> tuple[str, Run]:
        name = "clean" if plant is None else plant.name
        root = ROOT if plant is None else planted_copy(plant, ROOT, base / name)
        return name, _harness(root, base / f"{name}-reports")

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, [None, *PLANTS]))


def test_the_unplanted_server_passes_the_same_run(runs):
    run = runs["clean"]
    assert run.code == 0 and run.summary.get("verdict") == "PASS", run.output[-3000:]
    assert not run.metrics_failed


@pytest.mark.parametrize("plant", PLANTS, ids=[p.name for p in PLANTS])
def test_the_harness_fails_on_a_planted_bug(runs, plant):
    run = runs[plant.name]
    print(f"{plant.name}: {run.describe()}")  # the measured row (pytest -s shows it)
    assert run.code != 0, run.output[-3000:]
    assert run.shows(plant.caught_by), (plant.caught_by, run.describe(), run.output[-3000:])


def test_every_plant_applies_to_the_current_code(tmp_path):
    """Each edit still finds its text (a plant that plants nothing would pass vacuously)."""
    for plant in PLANTS:
        planted_copy(plant, ROOT, tmp_path / plant.name)


def test_the_readme_table_is_the_plants(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert render_table() in readme, "README planted-bug table is stale: paste render_table()"
