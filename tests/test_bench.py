"""The pure parts of `make bench` (bench/): goals and ratios, wrk's report, importtime, JUnit,
the refusal to write docs/ after a failed suite, the chart.

Nothing here times anything: the benchmark itself runs only under `make bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import chart, cores, report, suite, wrk
from bench.__main__ import main as bench_main
from bench.images import describe_base
from bench.imports import ImportProfile, median_profile, parse_importtime
from bench.layers import extra_layers, step_durations
from bench.profile import Profile, differences, own_code, self_shares
from bench.stats import Goal, Row, Sample, Spec, alternate, binned, open_at, percentile
from bench.suite import SuiteNotClean, clean_run, read_junit

WRK_REPORT = """\
Running 5s test @ http://127.0.0.1:18777/v1/chat
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.24ms    5.06ms  25.33ms   63.79%
    Req/Sec   362.35    152.68   620.00     70.00%
  Latency Distribution
     50%    7.09ms
     75%   11.60ms
     90%   15.72ms
     99%    1.02s
  3612 requests in 5.00s, 366.64KB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 12
Requests/sec:    718.88
Transfer/sec:    365.06KB
"""

STARTUP = Spec("spawn to first 200", Goal("<=", 1.20), "bare", "s")
THROUGHPUT = Spec("requests/s", Goal(">=", 0.90), "bare", "req/s")
RENDER = Spec("render", Goal("<=", 1.0), None, "s")


def test_sample_reports_median_min_and_max_of_its_runs() -> None:
    """An even number of runs has the mean of the middle two as its median."""
    sample = Sample((4.0, 1.0, 3.0, 2.0))
    assert sample.median == 2.5
    assert sample.as_dict() | {"values": None} == {
        "median": 2.5, "min": 1.0, "max": 4.0, "runs": 4, "values": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("op", "limit", "x", "met"),
    [
        ("<=", 1.2, 1.2, True),
        ("<=", 1.2, 1.21, False),
        (">=", 0.9, 0.9, True),
        (">=", 0.9, 0.8, False),
    ],
)
def test_goal_holds_on_its_boundary_and_fails_past_it(
    op: str, limit: float, x: float, met: bool
) -> None:
    """The limit itself meets the goal, in both directions."""
    assert Goal(op, limit).met(x) is met


def test_goal_rejects_an_unknown_comparison() -> None:
    """A typo in a goal fails loudly instead of silently never being met."""
    with pytest.raises(ValueError, match="<= or >="):
        Goal("<", 1.0)


def test_row_compares_the_ratio_of_medians_with_a_relative_goal() -> None:
    """1.1 s against a 1.0 s reference is a ratio of 1.1: within ≤ 1.20."""
    row = Row(STARTUP, Sample((1.0, 1.1, 5.0)), Sample((0.9, 1.0, 1.2)))
    assert row.ratio == pytest.approx(1.1)
    assert row.met is True
    assert row.as_dict()["goal"] == "≤ 1.20 x bare"


def test_row_misses_a_throughput_goal_when_the_service_is_slower() -> None:
    """Requests/s is a higher-is-better goal: 800 against 1000 is 0.8 < 0.90."""
    row = Row(THROUGHPUT, Sample((800.0,)), Sample((1000.0,)))
    assert row.ratio == pytest.approx(0.8)
    assert row.met is False


def test_row_without_its_reference_is_not_measured_rather_than_met() -> None:
    """A relative goal cannot be judged without the reference measured in the same run."""
    row = Row(STARTUP, Sample((1.0,)), note="not measured: no Docker engine")
    assert row.ratio is None
    assert row.met is None
    assert row.as_dict()["met"] is None


def test_row_with_an_absolute_goal_compares_the_median_itself() -> None:
    """The render goal is 1.0 s, not a ratio: a median of 1.3 s misses it."""
    row = Row(RENDER, Sample((1.2, 1.3, 1.4)))
    assert row.ratio is None
    assert row.met is False
    assert row.as_dict()["goal"] == "≤ 1 s"


def test_alternate_swaps_which_side_runs_first_every_round() -> None:
    """Load drifting during the run falls on the measure and its reference alike."""
    calls: list[str] = []

    def side(name: str) -> float:
        calls.append(name)
        return float(len(calls))

    a, b = alternate(3, lambda: side("a"), lambda: side("b"))
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert (a, b) == ([1.0, 4.0, 5.0], [2.0, 3.0, 6.0])


def test_wrk_report_is_read_with_p50_and_p99_in_seconds_and_error_counts() -> None:
    """req/s, p50 and p99 (in whichever unit wrk chose) and every kind of error."""
    result = wrk.parse(WRK_REPORT)
    assert result == wrk.WrkResult(
        requests_per_second=718.88,
        p50_seconds=0.00709,
        p99_seconds=1.02,
        requests=3612,
        non_2xx=12,
        socket_errors=7,
    )


def test_wrk_report_without_errors_counts_none() -> None:
    """Without error lines there were no errors."""
    clean = WRK_REPORT.replace("  Socket errors: connect 0, read 2, write 0, timeout 5\n", "")
    clean = clean.replace("  Non-2xx or 3xx responses: 12\n", "")
    result = wrk.parse(clean)
    assert (result.non_2xx, result.socket_errors) == (0, 0)


@pytest.mark.parametrize(
    ("text", "seconds"), [("812.00us", 812e-6), ("9.20ms", 0.0092), ("2.00s", 2.0)]
)
def test_wrk_durations_are_converted_to_seconds(text: str, seconds: float) -> None:
    assert wrk.duration_seconds(text) == pytest.approx(seconds)


def test_wrk_output_without_latency_distribution_is_an_error() -> None:
    """A run without --latency has no p99: better an error than a made-up number."""
    without = "\n".join(line for line in WRK_REPORT.splitlines() if "99%" not in line)
    with pytest.raises(wrk.WrkError, match="unexpected wrk output"):
        wrk.parse(without)


def test_wrk_post_script_sends_the_body_as_json() -> None:
    script = wrk.post_script({"message": 'say "hi"'})
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = [[{"message": "say \\"hi\\""}]]' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script


def test_wrk_post_script_refuses_a_body_that_would_end_the_lua_string() -> None:
    with pytest.raises(ValueError, match=r"\]\]"):
        wrk.post_script({"message": "a]]b"})


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:       500 |        600 | site
import time:        20 |         20 | app
import time:      1000 |       1000 |     pydantic.v1
import time:      2000 |       3000 |   openai
import time:       300 |        300 |   fastapi
import time:      4000 |       7300 | app.main
"""


def test_importtime_lists_the_direct_imports_of_the_module_slowest_first() -> None:
    """Nested imports are inside their parent's time; imports of other modules are not ours."""
    profile = parse_importtime(IMPORTTIME, "app.main")
    assert profile.total_ms == pytest.approx(7.3)
    assert profile.direct == [("openai", 3.0), ("fastapi", 0.3)]


def test_importtime_without_the_module_is_an_error() -> None:
    with pytest.raises(ValueError, match="bare"):
        parse_importtime(IMPORTTIME, "bare")


def test_import_profile_takes_the_median_of_each_import_over_runs() -> None:
    """An import missing from one run (already loaded elsewhere) still gets its median."""
    runs = [
        ImportProfile(10.0, [("openai", 6.0), ("fastapi", 3.0)]),
        ImportProfile(30.0, [("openai", 20.0)]),
        ImportProfile(12.0, [("openai", 7.0), ("fastapi", 5.0)]),
    ]
    assert median_profile(runs) == ImportProfile(12.0, [("openai", 7.0), ("fastapi", 4.0)])


def test_junit_suite_time_adds_up_every_testsuite() -> None:
    """pytest's <testsuites> root: time, tests and failures (errors count as failures)."""
    xml = (
        '<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="0" tests="40" '
        'time="612.5" timestamp="2025-01-01T10:00:00"/></testsuites>'
    )
    run = read_junit(xml)
    assert (run.seconds, run.tests, run.failures) == (612.5, 40, 3)
    assert run.timestamp == "2025-01-01T10:00:00"


def test_markdown_says_which_goal_was_missed_and_which_row_was_not_measured() -> None:
    rows = [
        Row(THROUGHPUT, Sample((800.0,)), Sample((1000.0,)), note="upstream-bound"),
        Row(STARTUP, note="not measured: no Docker engine"),
    ]
    machine = {
        "cores": 2, "memory_gib": 4.0, "cpu_model": "cpu", "system": "Linux",
        "load_average_at_start": (0.1, 0.1, 0.1),
    }  # fmt: skip
    text = report.markdown(report.Run(rows, machine, {"python": "3.13"}, 7, 5.0))
    assert "| requests/s | ≥ 0.90 x bare | 800 req/s | 1,000 req/s | 0.800 | **no** |" in text
    assert (
        "## Goals missed\n\n- **requests/s**: 800 req/s against 1,000 req/s (-200 req/s), "
        "ratio 0.800; goal ≥ 0.90 x bare. upstream-bound\n" in text
    )
    assert (
        "| spawn to first 200 | ≤ 1.20 x bare | not measured | not measured | — | not measured |"
        in text
    )
    assert "- spawn to first 200: not measured: no Docker engine" in text


def test_build_steps_last_until_the_next_step_and_come_slowest_first() -> None:
    """The classic builder's `Step N/M :` lines, timestamped as they arrive."""
    timed = [
        (0.0, "Sending build context to Docker daemon  52kB"),
        (0.1, "Step 1/3 : FROM python:3.13-slim"),
        (0.2, " ---> 90125762f8ec"),
        (0.3, "Step 2/3 : COPY app ./app"),
        (0.6, "Step 3/3 : RUN python -m compileall -q app"),
        (0.7, " ---> Running in 1234"),
    ]
    steps = step_durations(timed, end=1.8)
    assert [name for name, _ in steps] == [
        "RUN python -m compileall -q app", "COPY app ./app", "FROM python:3.13-slim",
    ]  # fmt: skip
    assert [round(seconds, 3) for _, seconds in steps] == [1.2, 0.3, 0.2]


def test_build_output_without_steps_reports_none() -> None:
    """BuildKit's output has no `Step` lines: nothing is made up."""
    assert step_durations([(0.0, "#5 [2/4] COPY app ./app"), (0.4, "#5 DONE 0.1s")], 1.0) == []


def test_extra_layers_are_the_non_empty_ones_the_reference_lacks() -> None:
    """Shared instructions and empty metadata layers (USER, CMD) are not what makes it larger."""
    seed = '/bin/sh -c pip install -r requirements.txt\t80MB\nCMD ["uvicorn"]\t0B\n'
    service = (
        "/bin/sh -c pip install -r requirements.txt\t80MB\n"
        "/bin/sh -c groupadd --system app\t4.1kB\n"
        "USER 10001:10001\t0B\n"
        "/bin/sh -c python -m compileall -q app\t1.2MB\n"
    )
    assert extra_layers(service, seed) == [
        ("/bin/sh -c groupadd --system app", "4.1kB"),
        ("/bin/sh -c python -m compileall -q app", "1.2MB"),
    ]


def test_a_row_without_a_goal_is_reported_but_neither_met_nor_missed() -> None:
    """Burst first tokens have no goal yet: the table shows the figure and "—", never "no"."""
    row = Row(Spec("burst p50", None, None, "ms"), Sample((2400.0,)))
    assert row.met is None
    assert row.spec.goal_text == "no goal"
    machine = {
        "cores": 2, "memory_gib": 4.0, "cpu_model": "cpu", "system": "Linux",
        "load_average_at_start": (0.1, 0.1, 0.1),
    }  # fmt: skip
    text = report.markdown(report.Run([row], machine, {}, 7, 5.0, chart="streams.svg"))
    assert "| burst p50 | no goal | 2,400 ms | — | — | — |" in text
    assert "## Goals missed" not in text
    assert "](streams.svg)" in text


@pytest.mark.parametrize(("percent", "expected"), [(0, 1.0), (50, 2.5), (99, 3.97), (100, 4.0)])
def test_percentiles_interpolate_between_the_closest_ranks(percent: float, expected: float) -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], percent) == pytest.approx(expected)


def test_a_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 99)


def test_open_streams_are_those_started_and_not_yet_ended() -> None:
    """A stream that ends at t is no longer open at t."""
    intervals = [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
    assert [open_at(intervals, t) for t in (0.5, 1.5, 2.0, 4.0)] == [1, 2, 2, 0]


def test_points_are_binned_along_x_and_thin_bins_left_out() -> None:
    points = [(10.0, 1.0), (40.0, 3.0), (60.0, 5.0), (120.0, 9.0), (130.0, 11.0)]
    assert binned(points, 50, max) == [(25.0, 3.0), (75.0, 5.0), (125.0, 11.0)]
    assert binned(points, 50, max, least=2) == [(25.0, 3.0), (125.0, 11.0)]


def junit(tmp_path: Path, failures: int, errors: int = 0, tests: int = 40) -> Path:
    path = tmp_path / "junit.xml"
    path.write_text(
        f'<testsuites><testsuite name="pytest" errors="{errors}" failures="{failures}" '
        f'tests="{tests}" time="600" timestamp="2026-12-01T08:00:00"/></testsuites>'
    )
    return path


def test_a_suite_run_with_failures_errors_or_none_at_all_is_not_clean(tmp_path: Path) -> None:
    """Failures and errors both count; a missing or unreadable file is no evidence either."""
    with pytest.raises(SuiteNotClean, match="records 16 failed or erroring tests of 436"):
        clean_run(junit(tmp_path, failures=16, tests=436))
    with pytest.raises(SuiteNotClean, match="records 1 failed"):
        clean_run(junit(tmp_path, failures=0, errors=1))
    with pytest.raises(SuiteNotClean, match=r"there is no .*run `make test` first"):
        clean_run(tmp_path / "missing.xml")
    (tmp_path / "broken.xml").write_text("<testsuites")
    with pytest.raises(SuiteNotClean, match="cannot be read"):
        clean_run(tmp_path / "broken.xml")
    assert clean_run(junit(tmp_path, failures=0)).tests == 40


def test_bench_refuses_to_write_docs_after_a_failed_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make bench` stops before measuring anything, says why and how to look locally, and
    leaves docs/ untouched."""
    monkeypatch.setattr(suite, "JUNIT", junit(tmp_path, failures=3))
    docs = tmp_path / "docs"
    assert bench_main(["--docs", str(docs)]) == 2
    message = capsys.readouterr().err
    assert "refusing to write" in message
    assert "records 3 failed" in message
    assert "BENCH_ARGS=--local" in message
    assert not docs.exists()


def test_a_partial_bench_must_be_a_local_one() -> None:
    """--only would leave rows out of docs/: only a --local run (never docs/) may use it."""
    with pytest.raises(SystemExit):
        bench_main(["--only", "streaming"])


def test_chart_draws_one_line_per_app_in_each_panel() -> None:
    """Valid SVG; a point per bin; a larger value is drawn higher (smaller y)."""
    figures = {
        "service": {"cpu_per_event_us": [(25.0, 200.0), (75.0, 300.0)],
                    "added_first_token_p99_ms": [(25.0, 5.0)]},
        "minimal-proxy": {"cpu_per_event_us": [(25.0, 250.0)], "added_first_token_p99_ms": []},
    }  # fmt: skip
    root = ET.fromstring(chart.svg(figures))  # noqa: S314 (our own output)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert [(line.get("class"), len(line.get("points", "").split())) for line in lines] == [
        ("service", 2), ("minimal-proxy", 1), ("service", 1),
    ]  # fmt: skip
    (first, second) = (point.split(",") for point in lines[0].get("points", "").split())
    assert float(first[0]) < float(second[0])
    assert float(first[1]) > float(second[1])
    texts = "".join(root.itertext())
    assert "CPU per streamed event" in texts
    assert "minimal-proxy" in texts


def test_chart_of_no_measurement_is_still_a_valid_svg() -> None:
    root = ET.fromstring(chart.svg({}))  # noqa: S314 (our own output)
    assert root.findall("{http://www.w3.org/2000/svg}polyline") == []


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0.0, 1.0), (3.2, 5.0), (180.0, 200.0), (201.0, 250.0), (1.0, 1.0)]
)
def test_axis_ends_are_round_numbers_at_or_above_the_data(value: float, ceiling: float) -> None:
    assert chart.nice_ceiling(value) == ceiling


def test_base_image_names_the_offline_stand_in() -> None:
    """An image made by `docker import` (or tagged as the CI stand-in) is said to be one."""
    standin = describe_base("python:3.13-slim", "Imported from -\n")
    assert "OFFLINE STAND-IN" in standin
    assert "OFFLINE STAND-IN" in describe_base("cloudrun-fastapi-ci/python:3.13-slim", "\n")
    official = describe_base("python:3.13-slim", "buildkit.dockerfile.v0\n\n")
    assert official == "python:3.13-slim"


COLLAPSED = """\
<module> (uvicorn:8);Server.run (uvicorn/server.py:86);Router.__call__ (starlette/routing.py:683) 6
<module> (uvicorn:8);RequestContext.__call__ (app/api/middleware.py:43) 2
<module> (uvicorn:8);RequestContext.__call__ (app/api/middleware.py:43);dumps (json/enc.py:2) 2
garbage line without a count
"""


def test_profile_splits_samples_by_the_package_and_function_running() -> None:
    """The innermost frame is what ran: a middleware calling json.dumps counts for json."""
    packages, functions = self_shares(COLLAPSED)
    assert packages == pytest.approx({"starlette": 0.6, "app": 0.2, "json": 0.2})
    assert own_code(functions) == [("RequestContext.__call__ (app/api/middleware.py)", 0.2)]


def test_profile_difference_is_per_request_cpu_by_package_largest_first() -> None:
    """200 µs x 50 % starlette against 100 µs x 80 %: +20 µs; app code is all extra."""
    service = Profile("service", "/health", 200.0, {"starlette": 0.5, "app": 0.3, "json": 0.2},
                      {"dumps (json/enc.py)": 0.2})  # fmt: skip
    bare = Profile("bare", "/health", 100.0, {"starlette": 0.8, "json": 0.2},
                   {"dumps (json/enc.py)": 0.1, "other (x.py)": 0.9})  # fmt: skip
    assert differences(service, bare) == [
        ("app", pytest.approx(60.0)), ("json", pytest.approx(20.0)),
        ("starlette", pytest.approx(20.0)),
    ]  # fmt: skip
    assert differences(service, bare, by="functions") == [
        ("other (x.py)", pytest.approx(-90.0)), ("dumps (json/enc.py)", pytest.approx(30.0)),
    ]  # fmt: skip


AFFINITY = "import os; print(sorted(os.sched_getaffinity(0)))"


def affinity_of(argv_prefix: list[str], preexec: bool = False) -> list[int]:
    """The cores a real child process may run on, as it reports them itself."""
    done = subprocess.run(
        [*argv_prefix, sys.executable, "-c", AFFINITY],
        capture_output=True, text=True, timeout=30, check=True,
        preexec_fn=cores.pin_bench if preexec else None,
    )  # fmt: skip
    return json.loads(done.stdout)


@pytest.mark.skipif(len(cores.AVAILABLE) < 2, reason="one core: nothing to keep apart")
def test_the_measured_app_and_the_bench_run_on_different_cores() -> None:
    """The app alone on its core; what the bench starts (wrk, the load generator) elsewhere."""
    app = affinity_of(cores.app_prefix())
    bench = affinity_of([], preexec=True)
    assert app == list(cores.APP)
    assert len(app) == 1
    assert bench == list(cores.OTHERS)
    assert not set(app) & set(bench)
    assert cores.docker_options() == ["--cpuset-cpus", str(app[0])]
