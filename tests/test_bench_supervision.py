"""Smoke tests of the supervision benchmark's pure pieces (``bench/supervision.py``); the
benchmark itself runs on demand (``python -m bench supervision``)."""

from __future__ import annotations

import argparse

from bench import supervision
from bench.__main__ import BENCHMARKS


def test_registered():
    assert BENCHMARKS["supervision"] is supervision.main


def test_both_servers_run_the_same_app_with_one_worker():
    ours = supervision.command("ours", 8001, "--timeout", "5")
    theirs = supervision.command("gunicorn", 8002, "--timeout", "5")
    assert ours[1:4] == ["-m", "server", supervision.APP]
    assert ours[ours.index("--workers"):ours.index("--workers") + 2] == ["--workers", "1"]
    assert theirs[1:5] == ["-m", "gunicorn", "-k", "gevent"] and theirs[-1] == supervision.APP
    assert "--timeout" in ours and "--timeout" in theirs


def test_render_reports_medians_and_runs_that_never_recovered():
    meta = {"date": "2026-12-01 20:00 UTC", "machine": "2 x cpu, load 0.10",
            "command": "python -m bench supervision", "versions": {"gevent": "26.9.0"},
            "servers": [supervision.command(s, 0) for s in supervision.SERVERS]}
    hangs = {"ours": {"cpu loop": [5.1, 5.3, 5.2], "blocking C call": [5.0, 5.0, 5.0]},
             "gunicorn": {"cpu loop": [7.0, None, 7.2], "blocking C call": [6.0, 6.0, 6.1]}}
    recycle = {"ours": {"requests": 12000, "failed": 0, "pids": 40, "max_per_pid": 310},
               "gunicorn": {"requests": 9000, "failed": 0, "pids": 3, "max_per_pid": 2000}}
    args = argparse.Namespace(timeout=5, runs=3, recycle_seconds=10.0)
    text = supervision.render(meta, hangs, recycle, args)
    assert "| cpu loop | **5.20 s** (5.10, 5.30, 5.20) | 1 of 3 never recovered" in text
    assert "| ctxserver | 12,000 | 0 | 40 | 310 |" in text
    assert "| gunicorn -k gevent | 9,000 | 0 | 3 | 2,000 |" in text


def test_the_dispatcher_runs_it_with_its_defaults(monkeypatch, tmp_path):
    """``python -m bench supervision`` calls main(command) with bench's own argv around."""
    monkeypatch.setattr("sys.argv", ["python -m bench", "supervision"])
    monkeypatch.setattr(supervision, "RESULTS", tmp_path)
    monkeypatch.setattr(supervision, "hang_recovery", lambda *a, **k: 5.25)
    monkeypatch.setattr(supervision, "recycling", lambda *a, **k: {
        "requests": 1000, "failed": 0, "pids": 9, "max_per_pid": 120})
    assert supervision.main("python -m bench supervision") == 0
    text = (tmp_path / "supervision.md").read_text()
    assert "`python -m bench supervision`" in text and "**5.25 s**" in text
    assert (tmp_path / "supervision.json").exists()
