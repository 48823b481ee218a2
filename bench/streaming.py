"""Streams, where Cloud Run bills: CPU per streamed event, first token at steady load, memory with
1,000 slow streams open, a burst of 1,000 arrivals, and the streams one vCPU serves.

Each app runs alone on one uvicorn process, fed by bench/paced_upstream.py, loaded by
bench/loadgen.py (a separate process, whose CPU is reported too). CPU is the app process's own
CPU time (/proc), sampled through the run; first tokens are timed by the load generator.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from bench import loadgen
from bench.paced_upstream import Pace
from bench.procstat import cpu_seconds, peak_rss_mib
from bench.project import BENCH, CHAT_BODY, Context, paced_upstream
from bench.servers import Probe, free_port, serving
from bench.stats import Goal, Row, Sample, Spec, binned, open_at, percentile

STREAM_BODY = {**CHAT_BODY, "stream": True}
PACE = Pace()  # the model: first token after 300 ms, then one chunk every 200 ms, 40
RAMP_RATE = 50.0  # new streams a second: with 8.1-s streams, about 400 open once it is full
RAMP_SECONDS = 12.0  # the last 3.9 s of it are the steady state, at about 400 open streams
SLOW = Pace(interval=0.5)  # the memory run: streams that stay open 20 s
MEMORY_STREAMS, MEMORY_RATE = 1000, 250.0
BURST = 1000
CHUNKS_PER_SECOND = 50  # a fast model; the generated README shows how to redo it for another
CPU_TARGET = 0.70  # of one vCPU: headroom for bursts and the runtime's own work
WINDOW = 0.5  # seconds per point of the CPU-per-event curve
CLIENTS = 1  # load generator processes; one costs a small fraction of what it measures
REFERENCES = ("minimal-proxy", "raw-relay")
BIN = 50  # open streams per point of the curves

CPU = Spec("CPU per streamed event (ramp to ~400 open streams)", Goal("<=", 0.75),
           "minimal-proxy", "µs")  # fmt: skip
CPU_FLOOR = Spec("CPU per streamed event: raw relay (the stack's floor)", None,
                 "minimal-proxy", "µs")  # fmt: skip
ADDED = Spec("added first-token p99 at ~400 open streams", Goal("<=", 50), None, "ms")
ADDED_VS = Spec("added first-token p99 at ~400 open streams, against minimal proxy",
                Goal("<=", 1.0), "minimal-proxy", "ms")  # fmt: skip
ADDED_FLOOR = Spec("added first-token p99: raw relay", None, "minimal-proxy", "ms")
RSS = Spec("peak RSS with 1,000 slow streams open", Goal("<=", 256), None, "MiB")
RSS_VS = Spec("peak RSS with 1,000 slow streams open, against minimal proxy", Goal("<=", 1.10),
              "minimal-proxy", "MiB")  # fmt: skip
BURST_FAILED = Spec("burst of 1,000 simultaneous streams: streams failed or cut",
                    Goal("<=", 0), None, "streams")  # fmt: skip
BURST_P50 = Spec("burst of 1,000: time to first token p50", None, None, "ms")
BURST_P99 = Spec("burst of 1,000: time to first token p99", None, None, "ms")
PER_VCPU = Spec(f"streams per vCPU at {CHUNKS_PER_SECOND} chunks/s and {CPU_TARGET:.0%} CPU",
                None, "minimal-proxy", "streams")  # fmt: skip
LOADGEN_CPU = Spec("load generator CPU per event", Goal("<=", 0.5), "service", "µs")
UPSTREAM_CPU = Spec("paced upstream CPU per event", Goal("<=", 0.5), "service", "µs")
SPECS = (CPU, CPU_FLOOR, ADDED, ADDED_VS, ADDED_FLOOR, RSS, RSS_VS, BURST_FAILED, BURST_P50,
         BURST_P99, PER_VCPU, LOADGEN_CPU, UPSTREAM_CPU)  # fmt: skip


@dataclass(frozen=True)
class Load:
    """One app under one load: what the load generator saw, and the app's CPU and memory."""

    app: str
    result: loadgen.Result
    cpu: float  # the app's CPU seconds over the run
    upstream_cpu: float
    peak_rss_mib: float
    samples: list[tuple[float, float]]  # (time.monotonic(), the app's CPU seconds so far)
    start: float  # the first arrival

    @cached_property
    def events(self) -> int:
        return sum(stream.events for stream in self.result.streams)

    @property
    def failed(self) -> list[loadgen.Stream]:
        return [stream for stream in self.result.streams if stream.error]

    def per_event_us(self, cpu: float) -> float:
        return cpu / max(self.events, 1) * 1e6

    def added_ms(self, stream: loadgen.Stream, pace: Pace) -> float:
        """The first token's wait beyond the upstream's own."""
        assert stream.first_token is not None
        assert stream.sent is not None
        return (stream.first_token - stream.sent - pace.first_token) * 1000

    def intervals(self) -> list[tuple[float, float]]:
        return [(s.sent or s.arrival, s.end or s.arrival) for s in self.result.streams]

    def steady(self, pace: Pace, seconds: float) -> list[loadgen.Stream]:
        """The ramp's streams that arrived once it was full (as many ending as starting)."""
        full, last = self.start + pace.stream_seconds, self.start + seconds
        return [s for s in self.result.streams
                if full <= s.arrival < last and s.first_token is not None]  # fmt: skip

    def steady_cpu_per_event_us(self, pace: Pace, seconds: float) -> float:
        """The app's CPU per event over the whole windows of the ramp's steady state (as many
        streams starting as ending, about rate x stream length open): set-up included at its
        steady-state share."""
        result = self.result
        first = math.ceil((pace.stream_seconds) / result.window)
        last = int(seconds / result.window)  # windows wholly before the last arrival
        events = sum(result.windows[first:last])
        begin, end = (self.start + index * result.window for index in (first, last))
        cpu = cpu_at(self.samples, end) - cpu_at(self.samples, begin)
        return cpu / max(events, 1) * 1e6

    def cpu_curve(self) -> list[tuple[float, float]]:
        """(open streams, CPU µs per event) per window with enough events to mean something."""
        result, points = self.result, []
        intervals = self.intervals()
        for index, events in enumerate(result.windows):
            begin = result.origin + index * result.window
            end = begin + result.window
            if events >= 50:
                cpu = cpu_at(self.samples, end) - cpu_at(self.samples, begin)
                points.append((open_at(intervals, (begin + end) / 2), cpu / events * 1e6))
        return points


def cpu_at(samples: list[tuple[float, float]], at: float) -> float:
    """The CPU seconds used by `at`, interpolated between the two samples around it."""
    before = [s for s in samples if s[0] <= at] or samples[:1]
    after = [s for s in samples if s[0] >= at] or samples[-1:]
    (t0, c0), (t1, c1) = before[-1], after[0]
    return c0 if t1 == t0 else c0 + (c1 - c0) * (at - t0) / (t1 - t0)


def run_load(
    ctx: Context,
    app: str,
    arrivals: str,
    upstream: tuple[int, int],
    pace: Pace,
    stop_after: float | None = None,
    on_start: Callable[[int, float], object] | None = None,
) -> Load:
    """A fresh `app` process under one load; returns when every stream has ended.
    `on_start(pid, first arrival)` runs once the load generators are started (a profiler)."""
    port = free_port()
    upstream_port, upstream_pid = upstream
    env = ctx.env(upstream_port=upstream_port)
    probe = Probe(port, "/v1/chat", STREAM_BODY)
    with serving(ctx.app_argv(app, port), probe, cwd=ctx.project, env=env) as proc:
        start = time.monotonic() + 0.5
        argv = [ctx.bin("python"), str(BENCH / "loadgen.py"), "--port", str(port)]
        argv += ["--body", json.dumps(STREAM_BODY), "--arrivals", arrivals]
        argv += ["--start-at", repr(start), "--window", str(WINDOW)]
        if stop_after is not None:
            argv += ["--stop-at", repr(start + stop_after)]
        cpu_before, upstream_before = cpu_seconds(proc.pid), cpu_seconds(upstream_pid)
        # Results go to files: a pipe nobody reads until the end would block a large result.
        outputs = [ctx.work / f"loadgen-{k}.json" for k in range(CLIENTS)]
        clients = []
        for k, output in enumerate(outputs):
            with output.open("w") as out, output.with_suffix(".err").open("w") as err:
                argv_k = [*argv, "--share", f"{k}/{CLIENTS}"]
                clients.append(subprocess.Popen(argv_k, stdout=out, stderr=err, text=True))
        if on_start is not None:
            on_start(proc.pid, start)
        samples = sample_cpu(proc.pid, clients, deadline=start + 120)
        results = []
        for client, output in zip(clients, outputs, strict=True):
            if client.wait(timeout=30) != 0:
                error = output.with_suffix(".err").read_text()[-500:]
                raise RuntimeError(f"the load generator exited {client.returncode}: {error}")
            results.append(loadgen.Result.from_json(output.read_text()))
        return Load(
            app=app,
            result=loadgen.merged(results),
            cpu=cpu_seconds(proc.pid) - cpu_before,
            upstream_cpu=cpu_seconds(upstream_pid) - upstream_before,
            peak_rss_mib=peak_rss_mib(proc.pid),
            samples=samples,
            start=start,
        )


def sample_cpu(
    pid: int, clients: list[subprocess.Popen[str]], deadline: float
) -> list[tuple[float, float]]:
    """The app's CPU time every 0.1 s while the load generators run (bounded by `deadline`)."""
    samples = []
    while any(client.poll() is None for client in clients):
        samples.append((time.monotonic(), cpu_seconds(pid)))
        if time.monotonic() > deadline:
            for client in clients:
                client.kill()
            raise RuntimeError("the streams did not end in time")
        time.sleep(0.1)
    samples.append((time.monotonic(), cpu_seconds(pid)))
    return samples


def rounds(
    ctx: Context, apps: tuple[str, ...], run: Callable[[str], Load]
) -> dict[str, list[Load]]:
    """`run(app)` for each app, `ctx.stream_runs` times, rotating which goes first."""
    loads: dict[str, list[Load]] = {app: [] for app in apps}
    for round_ in range(ctx.stream_runs):
        order = apps[round_ % len(apps) :] + apps[: round_ % len(apps)]
        for app in order:
            loads[app].append(run(app))
    return loads


def sample(loads: list[Load], value: Callable[[Load], float]) -> Sample:
    return Sample(tuple(value(load) for load in loads))


def steady_p99(load: Load) -> float:
    return percentile([load.added_ms(s, PACE) for s in load.steady(PACE, RAMP_SECONDS)], 99)


def cpu_per_event(load: Load) -> float:
    return load.steady_cpu_per_event_us(PACE, RAMP_SECONDS)


def streams_per_vcpu(load: Load) -> float:
    """One stream at N chunks/s costs N x (CPU per event) CPU-seconds a second."""
    return CPU_TARGET / (CHUNKS_PER_SECOND * cpu_per_event(load) / 1e6)


def held_open(load: Load) -> float:
    """The streams open when a steady-state stream arrived (median over them)."""
    intervals = load.intervals()
    steady = load.steady(PACE, RAMP_SECONDS)
    return percentile([open_at(intervals, s.sent or s.arrival) for s in steady], 50)


def schedule_lag(load: Load) -> float:
    """How late the load generator opened streams (p99, seconds): it must keep to its plan."""
    return percentile([(s.sent or s.arrival) - s.arrival for s in load.result.streams], 99)


def ramp_rows(loads: dict[str, list[Load]]) -> list[Row]:
    service, proxy, relay = (loads[app] for app in ("service", *REFERENCES))
    failed = sum(len(load.failed) for runs in loads.values() for load in runs)
    steady = [len(load.steady(PACE, RAMP_SECONDS)) for load in service]
    held = [held_open(load) for load in service]
    lag = max(schedule_lag(load) for load in service) * 1000
    events = percentile([s.events for load in service for s in load.result.streams
                         if not s.cut and not s.error], 50)  # fmt: skip
    per_stream = percentile([cpu_per_event(load) for load in service], 50) * events / 1000
    ramp_note = (
        f"{RAMP_RATE:g} new streams/s for {RAMP_SECONDS:g} s ({PACE.first_token * 1000:.0f} ms "
        f"to the first chunk, then one every {PACE.interval * 1000:.0f} ms, {PACE.chunks} "
        f"chunks), then all cut; CPU per event and first tokens from the steady state (from "
        f"{PACE.stream_seconds:.1f} s on: about {percentile(held, 50):.0f} streams open, "
        f"{percentile(steady, 50):.0f} arrivals a run); {failed} streams failed across all "
        f"runs; the load generator opened streams within {lag:.1f} ms of their schedule (p99)."
    )
    vcpu_note = (
        f"{CPU_TARGET:.0%} of one vCPU ÷ ({CHUNKS_PER_SECOND} chunks/s x CPU per event); the "
        f"CPU per event includes each stream's set-up, spread over its {events:.0f} events "
        f"({per_stream:.1f} ms CPU per stream): a conservative figure for long answers."
    )
    return [
        Row(CPU, sample(service, cpu_per_event), sample(proxy, cpu_per_event), note=ramp_note),
        Row(CPU_FLOOR, sample(relay, cpu_per_event), sample(proxy, cpu_per_event)),
        Row(ADDED, sample(service, steady_p99)),
        Row(ADDED_VS, sample(service, steady_p99), sample(proxy, steady_p99)),
        Row(ADDED_FLOOR, sample(relay, steady_p99), sample(proxy, steady_p99)),
        Row(
            PER_VCPU,
            sample(service, streams_per_vcpu),
            sample(proxy, streams_per_vcpu),
            note=vcpu_note,
        ),
        Row(
            LOADGEN_CPU,
            sample(service, lambda load: load.per_event_us(load.result.cpu_seconds)),
            sample(service, cpu_per_event),
        ),
        Row(
            UPSTREAM_CPU,
            sample(service, lambda load: load.per_event_us(load.upstream_cpu)),
            sample(service, cpu_per_event),
        ),
    ]


def memory_rows(loads: dict[str, list[Load]]) -> list[Row]:
    def held(load: Load) -> int:
        return sum(1 for s in load.result.streams if s.cut and s.first_token and not s.error)

    service = loads["service"]
    note = (
        f"{MEMORY_STREAMS:,} streams opened at {MEMORY_RATE:g}/s, one chunk every "
        f"{SLOW.interval * 1000:.0f} ms, all closed by the caller once open; streams open at "
        f"that moment: {', '.join(str(held(load)) for load in service)} (service runs). "
        "Peak RSS is the process's VmHWM."
    )
    rss = sample(service, lambda load: load.peak_rss_mib)
    proxy = sample(loads["minimal-proxy"], lambda load: load.peak_rss_mib)
    return [Row(RSS, rss, note=note), Row(RSS_VS, rss, proxy)]


def until_last_first_token(load: Load) -> tuple[float, float]:
    """(wall seconds, the app's CPU seconds) from the first arrival to the last first token."""
    last = max((s.first_token for s in load.result.streams if s.first_token), default=load.start)
    busy = cpu_at(load.samples, last) - cpu_at(load.samples, load.start)
    return max(last - load.start, 1e-9), busy


def busy_share(load: Load) -> float:
    wall, busy = until_last_first_token(load)
    return busy / wall


def burst_rows(loads: list[Load]) -> list[Row]:
    def first_tokens(load: Load) -> list[float]:
        return [(s.first_token - (s.sent or s.arrival)) * 1000
                for s in load.result.streams if s.first_token is not None]  # fmt: skip

    def dominated(load: Load) -> str:
        wall, busy = until_last_first_token(load)
        return (
            f"{busy / wall:.0%} of one core for {wall:.1f} s ({busy / BURST * 1000:.1f} ms/stream)"
        )

    errors = sorted({s.error for load in loads for s in load.failed})
    busy = [busy_share(load) for load in loads]
    if percentile(busy, 50) >= 0.8:
        why = (
            "CPU-bound: the first tokens wait behind the set-up of the requests ahead of them "
            "(parsing, the upstream call), not behind the upstream's "
            f"{PACE.first_token * 1000:.0f} ms"
        )
    else:
        why = (
            "below one full core: the process also waited for a CPU the machine's other "
            "work held, or for the upstream"
        )
    note = (
        f"Until the last first token the process ran at {'; '.join(map(dominated, loads))}: "
        f"{why}. Errors: {', '.join(errors) or 'none'}."
    )
    return [
        Row(BURST_FAILED, sample(loads, lambda load: float(len(load.failed))), note=note),
        Row(BURST_P50, sample(loads, lambda load: percentile(first_tokens(load), 50))),
        Row(BURST_P99, sample(loads, lambda load: percentile(first_tokens(load), 99))),
    ]


def curves(loads: dict[str, list[Load]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per app: CPU per event (median) and added first-token p99 against open streams."""

    def p99(values: list[float]) -> float:
        return percentile(values, 99)

    def median(values: list[float]) -> float:
        return percentile(values, 50)

    figures = {}
    for app, runs in loads.items():
        cpu = [point for load in runs for point in load.cpu_curve()]
        first = [(open_at(load.intervals(), s.sent or s.arrival), load.added_ms(s, PACE))
                 for load in runs for s in load.result.streams if s.first_token]  # fmt: skip
        figures[app] = {
            "cpu_per_event_us": binned(cpu, BIN, median),
            "added_first_token_p99_ms": binned(first, BIN, p99, least=10),
        }
    return figures


def measure(ctx: Context) -> list[Row]:
    upstream = (ctx.upstream_port, ctx.upstream_pid)
    ramp = f"ramp:{RAMP_RATE:g}:{RAMP_SECONDS:g}"
    # Cut once the last arrival has had its first token: the steady state is what is measured.
    until = RAMP_SECONDS + 5.0
    ramps = rounds(ctx, ("service", *REFERENCES),
                   lambda app: run_load(ctx, app, ramp, upstream, PACE, until))  # fmt: skip
    ctx.figures["streams"] = curves(ramps)
    rows = ramp_rows(ramps)
    with paced_upstream(ctx.venv, SLOW) as slow:
        slow_ramp = f"ramp:{MEMORY_RATE:g}:{MEMORY_STREAMS / MEMORY_RATE:g}"
        # Held until every stream has had its first chunk (10 s more at most), then all cut.
        hold = MEMORY_STREAMS / MEMORY_RATE + 10.0
        memory = rounds(ctx, ("service", "minimal-proxy"),
                        lambda app: run_load(ctx, app, slow_ramp, slow, SLOW, hold))  # fmt: skip
    rows += memory_rows(memory)
    bursts = rounds(ctx, ("service",),
                    lambda app: run_load(ctx, app, f"burst:{BURST}", upstream, PACE))  # fmt: skip
    return rows + burst_rows(bursts["service"])
