"""Smoke tests of the server benchmark's pure pieces (``bench/server/``).

No timed benchmark runs here: parsing wrk's output, medians and ratios, the target check,
the report writers and the command lines are checked on made-up numbers. The benchmark
itself runs on demand only (``make bench`` / ``python -m bench server``).
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import pytest

import bench.__main__ as dispatch
from bench import compiled, tls
from bench import server as bench_server
from bench.__main__ import BENCHMARKS
from bench.apps import hello
from bench.server import matrix, report, servers, stats, wrk
from bench.server import run as bench_run
from loadtests.probe_check import VALUE_KEYS

ROOT = Path(__file__).resolve().parent.parent

WRK_OUTPUT = """\
Running 6s test @ http://127.0.0.1:41234/
  1 threads and 500 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    42.10ms   12.00ms   1.02s    91.00%
    Req/Sec    11.90k     1.10k   13.00k    70.00%
  Latency Distribution
     50%   40.25ms
     75%  950.00us
     90%    1.50s
     99%    2.00m
  71234 requests in 6.01s, 11.21MB read
  Socket errors: connect 0, read 3, write 0, timeout 7
  Non-2xx or 3xx responses: 5
Requests/sec:  11852.58
Transfer/sec:      1.87MB
"""

CLEAN_OUTPUT = """\
Running 2s test @ http://127.0.0.1:43599/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.82ms    2.82ms  21.62ms   78.34%
    Req/Sec     8.69k     1.38k   11.74k    70.00%
  Latency Distribution
     50%    5.22ms
     75%    6.99ms
     90%    9.24ms
     99%   16.05ms
  17387 requests in 2.01s, 2.75MB read
Requests/sec:   8629.74
Transfer/sec:      1.37MB
"""


# --------------------------------------------------------------------------- wrk output


@pytest.mark.parametrize(("text", "ms"), [("950.00us", 0.95), ("8.18ms", 8.18),
                                          ("1.02s", 1020.0), ("2.00m", 120_000.0),
                                          (" 3ms ", 3.0)])
def test_wrk_durations_become_milliseconds(text: str, ms: float) -> None:
    assert wrk.parse_duration_ms(text) == pytest.approx(ms)


def test_bad_duration_is_rejected() -> None:
    with pytest.raises(ValueError):
        wrk.parse_duration_ms("fast")


def test_wrk_output_with_errors_is_parsed() -> None:
    result = wrk.parse_wrk(WRK_OUTPUT)
    assert result.requests_per_sec == pytest.approx(11852.58)
    assert result.requests == 71234 and result.duration_s == pytest.approx(6.01)
    assert result.latency_avg_ms == pytest.approx(42.10)
    assert (result.p50_ms, result.p75_ms, result.p90_ms, result.p99_ms) == \
        pytest.approx((40.25, 0.95, 1500.0, 120_000.0))
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 7}
    assert result.non_2xx == 5 and result.errors == 15


def test_clean_wrk_output_has_no_errors() -> None:
    result = wrk.parse_wrk(CLEAN_OUTPUT)
    assert result.requests_per_sec == pytest.approx(8629.74)
    assert (result.p50_ms, result.p99_ms) == pytest.approx((5.22, 16.05))
    assert result.errors == 0 and result.socket_errors == {}


def test_output_without_latency_distribution_leaves_percentiles_empty() -> None:
    text = "\n".join(line for line in CLEAN_OUTPUT.splitlines() if "%" not in line)
    result = wrk.parse_wrk(text)
    assert result.requests == 17387 and result.p50_ms is None and result.p99_ms is None


def test_output_without_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no wrk summary"):
        wrk.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


# --------------------------------------------------------------------------- statistics


def run(server: str, rps: float, p99: float, *, endpoint: str = "hello",
        conc: int = 50, p50: float = 1.0) -> dict:
    result = wrk.WrkResult(requests_per_sec=rps, requests=int(rps * 6), duration_s=6.0,
                             p50_ms=p50, p99_ms=p99)
    return {"endpoint": endpoint, "concurrency": conc, "server": server, "result": result}


def test_ratios_to_granian_the_ceiling_anchor_come_from_the_same_run() -> None:
    rows = stats.summarize([run("ours", 12_000, 4.0), run("gunicorn", 6_000, 20.0),
                            run("granian", 24_000, 2.0)])
    ours = next(r for r in rows if r.server == "ours")
    assert ours.ceiling_ratio == pytest.approx(0.5) and ours.rps_ratio == pytest.approx(2.0)
    text = report.render_markdown(rows, stats.check_targets(rows, None), META, None)
    assert "| 12,000 | 2.00\u00d7 | 0.50\u00d7 | 1.00 | 4.00 |" in text


def test_the_new_scenarios_run_on_their_servers_and_connection_counts() -> None:
    """io runs at 500 connections only; io and the Flask rows on ours (both paths),
    gunicorn and granian only; hello on every server asked for."""
    args = bench_run.build_parser().parse_args(["--runs", "2", "--concurrency", "50"])
    bench = bench_run.Bench(args, None, Path("/tmp"), {}, None, None)
    assert bench.concurrency("io") == [500] and bench.concurrency("hello") == [50]
    assert set(bench.servers("io")) == {"ours", "ours-pure", "gunicorn", "granian"}
    assert set(bench.servers("flask-json")) == set(bench.servers("io"))
    assert set(bench.servers("hello")) == set(matrix.SERVERS)
    assert bench.total == 2 * (len(matrix.SERVERS) * 2 + 4 * 3)  # hello, probe; io, flask x2


def test_median_ignores_missing_values() -> None:
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0]) == 2.5
    assert stats.median([None, 5.0]) == 5.0
    assert stats.median([None]) is None
    assert stats.ratio(6.0, 2.0) == 3.0 and stats.ratio(1.0, 0.0) is None
    assert stats.ratio(None, 2.0) is None


def test_summary_takes_medians_and_ratios_to_gunicorn_of_the_same_cell() -> None:
    runs = [run("ours", 30_000, 4.0), run("ours", 20_000, 6.0), run("ours", 40_000, 2.0),
            run("gunicorn", 5_000, 40.0), run("gunicorn", 10_000, 10.0),
            run("gunicorn", 7_500, 20.0), run("waitress", 9_000, 30.0),
            run("ours", 900, 400.0, endpoint="probe", conc=500),
            run("gunicorn", 300, 1600.0, endpoint="probe", conc=500)]
    rows = stats.summarize(runs)
    assert [(r.endpoint, r.concurrency, r.server) for r in rows] == [
        ("hello", 50, "ours"), ("hello", 50, "gunicorn"), ("hello", 50, "waitress"),
        ("probe", 500, "ours"), ("probe", 500, "gunicorn")]
    ours, gunicorn, waitress, probe, _ = rows
    assert (ours.rps, ours.p99_ms, ours.runs) == (30_000, 4.0, 3)
    assert ours.rps_runs == [30_000, 20_000, 40_000]
    assert ours.rps_ratio == pytest.approx(4.0) and ours.p99_ratio == pytest.approx(0.2)
    assert gunicorn.rps_ratio == pytest.approx(1.0)
    assert waitress.rps_ratio == pytest.approx(1.2)
    assert probe.rps_ratio == pytest.approx(3.0) and probe.p99_ratio == pytest.approx(0.25)


def test_summary_accepts_results_read_back_from_json() -> None:
    runs = [run("ours", 100, 1.0), run("gunicorn", 50, 2.0)]
    for entry in runs:
        entry["result"] = asdict(entry["result"])
    assert stats.summarize(runs)[0].rps_ratio == pytest.approx(2.0)


def test_without_gunicorn_there_are_no_ratios() -> None:
    rows = stats.summarize([run("ours", 100, 1.0), run("pywsgi", 50, 2.0)])
    assert all(r.rps_ratio is None and r.p99_ratio is None for r in rows)


def test_targets_are_checked_against_the_medians() -> None:
    rows = stats.summarize([
        run("ours", 40_000, 5.0), run("gunicorn", 9_000, 20.0),
        run("ours", 38_000, 30.0, conc=500), run("gunicorn", 10_000, 100.0, conc=500),
        run("ours", 8_000, 50.0, endpoint="probe"), run("gunicorn", 3_000, 90.0,
                                                        endpoint="probe"),
        run("ours", 7_000, 300.0, endpoint="probe", conc=500),
        run("gunicorn", 2_000, 500.0, endpoint="probe", conc=500)])
    memory = {"ours": {"per_connection_bytes": 10_000},
              "gunicorn": {"per_connection_bytes": 14_000}}
    targets = {t.name: t for t in stats.check_targets(rows, memory)}
    hello_target = targets["hello throughput vs gunicorn -k gevent"]
    assert hello_target.met is False  # 3.8x at c500 misses 4x, though c50 has 4.44x
    assert "c50: 4.44" in hello_target.measured and "c500: 3.80" in hello_target.measured
    assert targets["probe throughput vs gunicorn -k gevent"].met is False  # 2.67x at c50
    assert targets["hello p99 at 500 connections vs gunicorn"].met is True  # 0.3x
    assert targets["probe p99 at 500 connections vs gunicorn"].met is False  # 0.6x
    assert targets["RSS per idle keep-alive connection"].met is True


def test_targets_not_measured_are_said_so() -> None:
    targets = stats.check_targets(stats.summarize([run("ours", 1.0, 1.0)]), None)
    assert [t.met for t in targets] == [None, None]


# --------------------------------------------------------------------------- reports


META = {
    "command": ".venv/bin/python -m bench server", "defaults": True,
    "date": "2026-01-01 00:00 UTC", "nproc": 2, "cpu": "Test CPU", "kernel": "Linux 6",
    "loadavg": "0.10 0.20 0.30", "versions": {"python": "3.11.7", "wrk": "4.1.0"},
    "server_cpu": 0, "client_cpu": 1, "warmup": 2.0, "duration": 6.0, "runs": 3,
    "server_commands": {"ours, hello": "taskset -c 0 python -m server ..."},
    "memory_commands": {"ours": "taskset -c 0 python -m server --keep-alive 3600 ..."},
    "wrk_command": "taskset -c 1 wrk -t1 -c500 ...",
}
MEMORY = {"_connections": 10_000,
          "ours": {"connections": 10_000, "rss_before": 30 * 2**20,
                   "rss_after": 150 * 2**20, "per_connection_bytes": 12 * 2**20 / 1000,
                   "alive_checked": 100, "alive_checked_ok": 100},
          "gunicorn": {"error": "server exited with 1"}}


def sample_rows() -> list[stats.Row]:
    return stats.summarize([run("ours", 30_000, 4.0), run("gunicorn", 9_000, 20.0),
                            run("ours", 25_000, 40.0, conc=500),
                            run("gunicorn", 8_000, 400.0, conc=500)])


def test_markdown_report_has_the_table_targets_memory_and_commands() -> None:
    rows = sample_rows()
    text = report.render_markdown(rows, stats.check_targets(rows, MEMORY), META, MEMORY)
    assert "`.venv/bin/python -m bench server` (what `make bench` runs)" in text
    assert "nproc 2, Test CPU" in text and "python 3.11.7, wrk 4.1.0" in text
    assert "| hello | 50 | ours (python -m server) | 30,000 | 3.33\u00d7 | \u2013 | 1.00 | 4.00 " \
           "| 0.20\u00d7 | 0 | 30,000 |" in text
    assert "| hello | 500 | gunicorn -k gevent | 8,000 | 1.00\u00d7 |" in text
    assert "| hello throughput vs gunicorn -k gevent | \u2265 4\u00d7 at every concurrency " \
           "| c50: 3.33\u00d7, c500: 3.12\u00d7 | **no** |" in text
    assert "| hello p99 at 500 connections vs gunicorn | \u2264 0.5\u00d7 | 0.10\u00d7 " \
           "| yes |" in text
    assert "| ours (python -m server) | 30.0 MiB | 150.0 MiB | 100/100 checked " \
           "| 12.3 KiB |" in text
    assert "failed: server exited with 1" in text
    assert "- ours, hello: `taskset -c 0 python -m server ...`" in text
    assert "- load: `taskset -c 1 wrk -t1 -c500 ...`" in text


def test_json_and_chart_are_written(tmp_path: Path) -> None:
    rows = sample_rows()
    targets = stats.check_targets(rows, MEMORY)
    runs = [dict(run("ours", 30_000, 4.0), wrk_output=CLEAN_OUTPUT)]
    report.write_json(tmp_path / "server.json", META, runs, rows, targets, MEMORY)
    data = json.loads((tmp_path / "server.json").read_text())
    assert data["runs"][0]["result"]["requests_per_sec"] == 30_000
    assert data["runs"][0]["wrk_output"] == CLEAN_OUTPUT
    assert data["summary"][0]["rps_ratio"] == pytest.approx(30_000 / 9_000)
    assert data["targets"][0]["met"] is False and data["meta"]["nproc"] == 2
    report.write_chart(tmp_path / "server.png", rows, MEMORY, "test chart")
    assert (tmp_path / "server.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- command lines


def test_server_commands() -> None:
    ours = servers.server_command("ours", "bench.apps:hello", 8001, python="py")
    assert ours == ["py", "-m", "server", "--workers", "1", "--bind", "127.0.0.1:8001",
                    "--access-log", "off", "--log-level", "warning", "bench.apps:hello"]
    gunicorn = servers.server_command("gunicorn", "server.probe:create_app()", 8001,
                                    python="py")
    assert gunicorn[:7] == ["py", "-m", "gunicorn", "-k", "gevent", "-w", "1"]
    assert gunicorn[-1] == "server.probe:create_app()"
    assert "--worker-connections" not in gunicorn  # its default, as the issue asks
    waitress = servers.server_command("waitress", "server.probe:create_app()", 8001,
                                    python="py")
    assert "--threads=4" in waitress and waitress[-2:] == ["--call", "server.probe:create_app"]
    assert servers.server_command("waitress", "bench.apps:hello", 1, python="py")[-1] == \
        "bench.apps:hello"
    assert servers.server_command("pywsgi", "bench.apps:hello", 8001, python="py") == \
        ["py", "-m", "bench.pywsgi_runner", "127.0.0.1:8001", "bench.apps:hello"]
    for server in ("ours", "gunicorn"):
        memory = servers.server_command(server, "bench.apps:hello", 1, memory_test=True)
        assert memory[memory.index("--keep-alive") + 1] == "3600"
        assert int(memory[memory.index("--worker-connections") + 1]) >= 10_000
    with pytest.raises(ValueError):
        servers.server_command("nginx", "x", 1)


def test_wrk_command_pins_and_sends_the_probe_header() -> None:
    command = wrk.wrk_command("probe", 8001, 500, 6.0, 1)
    assert command[:3] == ["taskset", "-c", "1"]
    assert "-c500" in command and "-d6s" in command and "--latency" in command
    assert command[command.index("-H") + 1] == f"X-Probe-Token: {matrix.PROBE_TOKEN}"
    assert command[-1].endswith(f"/probe/{matrix.PROBE_TOKEN}?yields=0")
    hello_command = wrk.wrk_command("hello", 8001, 50, 2.5, None)
    assert hello_command[0] == "wrk" and "-H" not in hello_command
    assert hello_command[-1] == "http://127.0.0.1:8001/" and "-d2.5s" in hello_command


def test_missing_wrk_prints_the_install_command_and_exits_non_zero(tmp_path: Path) -> None:
    """The benchmark installs nothing itself: without wrk on PATH it says what to run."""
    done = subprocess.run([sys.executable, "-m", "bench.server", "--results", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0
    assert done.stderr.strip() == ("bench server: wrk is not installed; install it with: "
                                   "apt-get install -y wrk")
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


def probe_payload(token: str = matrix.PROBE_TOKEN, **changes: object) -> bytes:
    values = dict.fromkeys(VALUE_KEYS, token)
    return json.dumps({"token": token, "values": values, "stale": [], **changes}).encode()


@pytest.mark.parametrize(("answer", "problem"), [
    ((200, probe_payload()), None),
    ((200, probe_payload(stale=["g=deadbeef"])), "LEAK"),  # something left over
    ((200, probe_payload(values={"path": matrix.PROBE_TOKEN})), "BAD RESPONSE"),  # keys missing
    ((500, b"oops"), "BAD RESPONSE"),
])
def test_probe_answer_is_judged_by_the_load_tests_rules(
    monkeypatch: pytest.MonkeyPatch, answer: tuple[int, bytes], problem: str | None
) -> None:
    """``check_answer`` applies ``loadtests.probe_check`` (one judgement, not a copy), and
    sends the token as X-Request-ID so that ``values.request_id`` can be checked too."""
    asked: list[dict[str, str]] = []

    def fetch(url: str, *, headers: dict[str, str]) -> tuple[int, bytes]:
        asked.append(headers)
        return answer

    monkeypatch.setattr(servers.procs, "fetch", fetch)
    if problem is None:
        servers.check_answer("probe", 1)
    else:
        with pytest.raises(RuntimeError, match=f"^probe answered wrongly: {problem} "):
            servers.check_answer("probe", 1)
    assert asked == [{"X-Probe-Token": matrix.PROBE_TOKEN, "X-Request-ID": matrix.PROBE_TOKEN}]
    assert matrix.HEADERS["probe"] == {"X-Probe-Token": matrix.PROBE_TOKEN}  # wrk's load


def test_flags_for_a_quick_run() -> None:
    args = bench_run.build_parser().parse_args(
        ["--duration", "1", "--warmup", "0", "--runs", "1", "--concurrency", "10",
         "--servers", "ours", "gunicorn", "--idle-connections", "0"])
    assert (args.duration, args.warmup, args.runs, args.concurrency) == (1.0, 0.0, 1, [10])
    assert args.servers == ["ours", "gunicorn"] and args.idle_connections == 0
    defaults = bench_run.build_parser().parse_args([])
    assert defaults.runs == 3 and defaults.concurrency == [50, 500]
    assert defaults.idle_connections == 10_000


def test_benchmark_is_in_the_dispatch_table() -> None:
    assert BENCHMARKS["server"] is bench_server.main is bench_run.main


def test_hello_app_is_a_minimal_wsgi_callable() -> None:
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    body = hello({}, lambda status, headers: seen.append((status, headers)))
    assert body == [b"Hello, World!"]
    assert seen == [("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])]
    hello({}, lambda status, headers: headers.append(("X-Extra", "1")))
    assert hello({}, lambda status, headers: seen.append((status, headers))) == body
    assert seen[-1][1] == seen[0][1]  # a fresh header list per call


# --------------------------------------------------------------------------- speed-ups


def test_batched_metrics_equal_prometheus_own_observations() -> None:
    """``Metrics.observe`` counts in Python and flushes once the loop is idle; the result
    must be what per-request ``Counter.inc`` / ``Histogram.observe`` would have written."""
    script = r"""
import gevent, json
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from server.metrics import Metrics
metrics = Metrics()
durations = [0.0005, 0.001, 0.001000001, 0.003, 0.2, 7.0, 11.0, 0.0]
for i, d in enumerate(durations):
    metrics.observe(200 if i % 3 else 500, d)
gevent.sleep(0.01)  # the loop goes idle: the batch is written
reference = Histogram("reference", "", buckets=metrics.duration._upper_bounds[:-1],
                      registry=CollectorRegistry())
for d in durations:
    reference.observe(d)
def samples(metric):
    return {(s.name.split("_", 1)[1] if s.name.startswith("reference") else
             s.name.split("seconds_")[1], tuple(sorted(s.labels.items()))): s.value
            for m in metric.collect() for s in m.samples if not s.name.endswith("created")}
out = {"ours": {repr(k): v for k, v in samples(metrics.duration).items()},
       "ref": {repr(k): v for k, v in samples(reference).items()},
       "status": {s.labels["status"]: s.value for m in metrics.requests.collect()
                  for s in m.samples if s.name.endswith("_total")}}
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ours"] == out["ref"]
    assert out["status"] == {"500": 3.0, "200": 5.0}


def test_tls_bench_commands_and_report_on_made_up_numbers() -> None:
    """``python -m bench tls``: HTTPS servers get the run's certificate; the report has a
    row per server and scheme and HTTPS as a share of HTTP (no timed run here)."""
    https = tls.command("ours", "https", 8443, ("/c/cert.pem", "/c/key.pem"))
    assert https[-5:] == ["--certfile", "/c/cert.pem", "--keyfile", "/c/key.pem",
                          "bench.apps:hello"]
    assert "--certfile" not in tls.command("gunicorn", "http", 8080, ("c", "k"))
    sample = {"rps": 1000.0, "p50_ms": 1.0, "p99_ms": 5.0, "errors": 0, "wrk": "wrk"}
    data = {"samples": {f"{s}/{c}": [dict(sample, rps=1000.0 if c == "http" else 800.0)]
                        for s in tls.SERVERS for c in tls.SCHEMES},
            "commands": {"ours/https": "python -m server --certfile $CERTS/cert.pem"}}
    args = tls.build_parser().parse_args(["--rounds", "1"])
    text = tls.report(data, args, "python -m bench tls")
    assert "| ctxserver | https | 800 | 1.00 | 5.00 | 80% | 0 |" in text
    assert "ours serves 1.00\u00d7 gunicorn" in text


def test_compiled_bench_declares_each_plain_class_a_cdef_class_with_its_attributes(
        tmp_path: Path) -> None:
    module = tmp_path / "mod.py"
    module.write_text(
        "class Slotted:\n"
        "    __slots__ = (\n        'a',\n        'b',\n    )\n\n"
        "    def __init__(self):\n        self.a = self.b = 1\n\n"
        "    def grow(self):\n        self.c: int = 2\n        self.d += 1\n\n"
        "class Namespace:\n    pass\n\n"
        "class Derived(Exception):\n    pass\n")
    compiled.cdef_pxd(module)
    assert (tmp_path / "mod.pxd").read_text() == (
        "cdef class Slotted:\n    cdef public object a, b, c, d\n"
        "    cdef object __weakref__\n")
    lines = module.read_text().splitlines()
    assert lines[1:5] == ["    pass"] * 4  # __slots__ gone, the line numbers kept
    assert "__slots__" not in module.read_text()


def test_compiled_bench_runs_only_when_named(monkeypatch) -> None:
    ran: list[str] = []
    table = {name: (lambda command, name=name: ran.append(name) or 0) for name in BENCHMARKS}
    monkeypatch.setattr(dispatch, "BENCHMARKS", table)
    assert dispatch.main([]) == 0
    assert "compiled" not in ran and ran == [n for n in BENCHMARKS if n != "compiled"]
    ran.clear()
    assert dispatch.main(["compiled"]) == 0 and ran == ["compiled"]


def test_compiled_bench_rewrites_its_tables_and_keeps_the_findings(tmp_path: Path) -> None:
    results = tmp_path / "compiled.md"
    compiled.write_results(results, "# old tables\n\n| 1 |\n")
    results.write_text(results.read_text() + f"\n{compiled.FINDINGS}\n\nwhy, by hand\n")
    compiled.write_results(results, "# new tables\n\n| 2 |\n\n")
    assert results.read_text() == (
        f"# new tables\n\n| 2 |\n\n{compiled.FINDINGS}\n\nwhy, by hand\n")


@pytest.mark.parametrize(("server", "arena", "speedups", "fails"), [
    ("ours", 1, 1, False), ("ours", 0, 1, True), ("ours", 0, 0, True),
    ("ours-pure", 0, 0, False), ("ours-pure", 1, 1, True), ("gunicorn", 0, 0, False)])
def test_ours_is_benchmarked_only_with_the_accelerators_its_label_says(server, arena,
                                                                       speedups, fails):
    """A fresh checkout without `make speedups` ran "ours" on the pure path once, under
    the accelerated label: the bench now reads the worker's /metrics first."""
    page = (f'ctxserver_accelerator_active{{name="arena_cache"}} {arena}.0\n'
            f'ctxserver_accelerator_active{{name="ctxlocal_speedups"}} {speedups}.0\n').encode()

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        if fails:
            with pytest.raises(RuntimeError, match="expected every accelerator"):
                servers.check_accelerators(server, httpd.server_port)
        else:
            servers.check_accelerators(server, httpd.server_port)
    finally:
        httpd.shutdown()
        httpd.server_close()
