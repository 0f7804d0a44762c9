"""Benchmark: the HTTP service under load from a second process: latency, errors, memory in a soak.

Usage:
    python bench/serve_load.py [--rates 50,100,200] [--duration 30] [--soak 0] [--repeat-share 0]
    python bench/serve_load.py --url http://127.0.0.1:8000 --key bst_... [--pid PID]

By default starts `bastion serve` on 127.0.0.1 with a fresh temporary home (the admin key it
prints at first start, plus moderator keys created so that no key gets more than half of its
rate limit), waits for /readyz and warms it up with sequential requests. With --url and --key it
targets a server that is already running instead (--pid lets it sample that server's memory).

Load comes from a second process: locust, headless, one run per step, with the users in
bench/locustfile_moderations.py. Each user sends one short social-post text to
POST /v1/moderations per second on its own schedule (uniform or Poisson gaps, random phase),
so N requests/s is N users; texts are distinct (bench/serve_load_texts.py) unless
--repeat-share asks for a share of repeats from a hot set of 50. Percentiles are exact, from a
per-request log the locustfile writes (locust's own are bucketed; they are kept in the JSON to
compare). "p99 from schedule" adds the time a request waited past its scheduled send because
its user was still waiting on the previous answer, which shows a saturated server's queue that
a closed-loop client would hide.

Per step it also scrapes /metrics before and after (server-side count, mean and share under
50 ms), and samples the CPU of the server, of locust and of everything else on the machine
(other CPU load makes a 2-core number meaningless, so it is recorded).

--soak SECONDS runs one more step at --soak-rate (100/s) and samples the server's RSS (with its
child processes) every 5 s: first-minute and last-minute medians, the slope of a linear fit in
MB/min, and "no growth" when the last minute is within max(2 %, 10 MB) of the first (the soak
starts after warm-up and the steps, so its first minute is the warmed-up baseline). The full
soak is 600 s.

Writes bench/out/serve_load.json (and .md). The goal checked on every row: p99 under 50 ms,
zero errors, and at least 95 % of the target rate achieved.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

import bastion
from bastion.cpus import available_cpus
from common import git, machine, versions  # bench/ is on sys.path when a benchmark runs
from serve_load_texts import DISTINCT, short_post

# Not in the lock files yet. locust is only looked for, never imported here: importing it
# monkey-patches threads and sockets with gevent; it runs as its own process.
if any(importlib.util.find_spec(name) is None for name in ("locust", "psutil")):
    raise SystemExit(
        "bench/serve_load.py needs locust and psutil: "
        ".venv/bin/pip install locust==2.47.0 psutil==7.2.2"
    )
import psutil  # after the check above

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile_moderations.py")
ROUTE = "/v1/moderations"
KEY_SHARE_OF_LIMIT = 50.0  # requests/s per key at most: half of the default 6,000 a minute


# --------------------------------------------------------------------------- the server


@dataclass
class Target:
    """The server under load: where it listens, the keys to use, and its process if known."""

    url: str
    keys: list[str]
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    home: Path | None = None
    log: Path | None = None
    started_seconds: float = 0.0

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is None or psutil.pid_exists(self.pid)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    home: Path, extra_keys: int, timeout: float = 300.0, workers: int | None = None
) -> Target:
    """`bastion serve` in `home` (empty), with `workers` processes (None: the server's default,
    one per CPU): read the admin key it prints, wait for /readyz."""
    port = _free_port()
    exe = Path(sys.executable).with_name("bastion")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "bastion.cli"]
    command += ["serve", "--host", "127.0.0.1", "--port", str(port), "--home", str(home)]
    command += [] if workers is None else ["--workers", str(workers)]
    log = home / "server.log"
    start = time.monotonic()
    with log.open("wb") as out:  # a file, not a pipe: a pipe nobody reads can block the server
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    target = Target(url, [], proc.pid, proc, home, log)
    deadline = start + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{_tail(log)}")
        if not target.keys and (found := re.search(r"admin API key: (bst_\S+)", _read(log))):
            target.keys.append(found.group(1))
        if target.keys:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
        time.sleep(0.25)
    else:
        stop_server(target)
        raise SystemExit(f"the server was not ready within {timeout:.0f} s:\n{_tail(log)}")
    target.started_seconds = time.monotonic() - start
    if extra_keys:
        from bastion.store import Role, Store

        store = Store.open(home)
        try:
            for n in range(extra_keys):
                _, secret = store.create_key(f"load benchmark {n + 1}", Role.moderator)
                target.keys.append(secret)
        finally:
            store.close()
    return target


def stop_server(target: Target, timeout: float = 45.0) -> int | None:
    proc = target.proc
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()  # uvicorn shuts down gracefully on SIGTERM
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])


def warm_up(target: Target, requests: int, text_offset: int) -> dict[str, Any]:
    """Sequential requests until the model's first-call costs are paid; what they took."""
    headers = {"Authorization": f"Bearer {target.keys[0]}"}
    latencies: list[float] = []
    with httpx.Client(base_url=target.url, headers=headers, timeout=30) as client:
        for i in range(requests):
            start = time.perf_counter()
            response = client.post(ROUTE, json={"input": short_post(text_offset + i)})
            latencies.append(1000 * (time.perf_counter() - start))
            response.raise_for_status()
        verdicts = client.post("/v1/moderate", json={"items": [{"text": short_post(0)}]})
        verdicts.raise_for_status()
        health = client.get("/healthz").json()
    body = verdicts.json()
    tail = latencies[-max(1, requests // 4) :]
    return {
        "requests": requests,
        "first_ms": latencies[0] if latencies else None,
        "median_last_quarter_ms": float(np.median(tail)) if latencies else None,
        "policy_version": body.get("policy_version"),
        "model_version": body.get("model_version"),
        "models_loaded": health.get("models"),
    }


# --------------------------------------------------------------------------- observing


@dataclass
class Sample:
    t: float  # seconds since the sampler started
    rss_mb: float | None  # the server process
    tree_rss_mb: float | None  # the server and its children
    server_cpu_s: float | None  # user + system seconds, server and children
    locust_cpu_s: float | None
    busy_cpu_s: float  # all CPUs, non-idle seconds since boot


def _cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


class Sampler(threading.Thread):
    """Every `interval` s: the server's RSS and CPU, locust's CPU, and the machine's busy CPU."""

    def __init__(self, server_pid: int | None, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.server = _process(server_pid)
        self.locust: psutil.Process | None = None
        self.samples: list[Sample] = []
        self._stop_event = threading.Event()
        self._start = time.monotonic()

    def watch_locust(self, pid: int) -> None:
        self.locust = _process(pid)

    def sample(self) -> None:
        rss = tree_rss = server_cpu = locust_cpu = None
        if self.server is not None:
            try:
                with self.server.oneshot():
                    rss = self.server.memory_info().rss / 2**20
                    server_cpu = _cpu_seconds(self.server)
                children = self.server.children(recursive=True)
                tree_rss = rss
                for child in children:
                    try:
                        tree_rss += child.memory_info().rss / 2**20
                        server_cpu += _cpu_seconds(child)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
        if self.locust is not None:
            with contextlib.suppress(psutil.Error):  # exited: its last sample stands
                locust_cpu = _cpu_seconds(self.locust)
        self.samples.append(
            Sample(
                time.monotonic() - self._start,
                rss,
                tree_rss,
                server_cpu,
                locust_cpu,
                _busy_seconds(),
            )
        )

    def run(self) -> None:
        self.sample()
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> list[Sample]:
        self._stop_event.set()
        self.join()
        self.sample()
        return self.samples


def _process(pid: int | None) -> psutil.Process | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def cpu_use(samples: list[Sample]) -> dict[str, float | None]:
    """Average cores used over the samples by the server, by locust and by everything else."""
    if len(samples) < 2:
        return {"server_cores": None, "locust_cores": None, "other_cores": None}
    wall = samples[-1].t - samples[0].t

    def delta(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return (known[-1] - known[0]) / wall if len(known) >= 2 and wall > 0 else None

    server = delta([s.server_cpu_s for s in samples])
    locust = delta([s.locust_cpu_s for s in samples])
    busy = delta([s.busy_cpu_s for s in samples]) or 0.0
    other = busy - (server or 0.0) - (locust or 0.0)
    return {"server_cores": server, "locust_cores": locust, "other_cores": max(0.0, other)}


def scrape(url: str) -> dict[str, Any]:
    """The service's own view of ROUTE: requests by status, the latency histogram, errors by type."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, Any] = {"status": {}, "buckets": {}, "sum": 0.0, "count": 0.0, "errors": {}}
    out |= {"batch_items_sum": 0.0, "batch_items_count": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("route") not in (None, ROUTE):
                continue
            if s.name == "bastion_requests_total" and s.labels.get("route") == ROUTE:
                out["status"][s.labels["status"]] = s.value
            elif s.name == "bastion_request_seconds_bucket" and s.labels.get("route") == ROUTE:
                out["buckets"][s.labels["le"]] = s.value
            elif s.name == "bastion_request_seconds_sum" and s.labels.get("route") == ROUTE:
                out["sum"] = s.value
            elif s.name == "bastion_request_seconds_count" and s.labels.get("route") == ROUTE:
                out["count"] = s.value
            elif s.name in ("bastion_batch_items_sum", "bastion_batch_items_count"):
                out[s.name.removeprefix("bastion_")] = s.value
            elif s.name == "bastion_errors_total":
                out["errors"][s.labels["type"]] = s.value
    return out


def server_view(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the service measured between two scrapes (its own latency excludes the client)."""
    count = after["count"] - before["count"]

    def diff(name: str) -> dict[str, float]:
        keys = set(before[name]) | set(after[name])
        changes = {k: after[name].get(k, 0.0) - before[name].get(k, 0.0) for k in sorted(keys)}
        return {k: v for k, v in changes.items() if v}

    buckets = diff("buckets")
    batches = after["batch_items_count"] - before["batch_items_count"]
    batch_items = after["batch_items_sum"] - before["batch_items_sum"]
    return {
        "requests": count,
        "mean_ms": 1000 * (after["sum"] - before["sum"]) / count if count else None,
        "share_under_50ms": buckets.get("0.05", 0.0) / count if count else None,
        "buckets": buckets,
        "batches": batches,  # bastion_batch_items: per request, or per model call once batched
        "mean_batch_items": batch_items / batches if batches else None,
        "status": diff("status"),
        "errors": diff("errors"),
    }


def wait_idle(url: str, quiet: float = 2.0, limit: float = 180.0) -> float:
    """Wait until the service's request count stops moving (abandoned requests drained)."""
    start = time.monotonic()
    last, since = -1.0, time.monotonic()
    while time.monotonic() - start < limit:
        try:
            count = scrape(url)["count"]
        except httpx.HTTPError:
            count = last
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.5)
    return time.monotonic() - start


# --------------------------------------------------------------------------- one step


@dataclass
class Step:
    name: str
    rate: float
    seconds: int
    users: int
    text_offset: int
    sample_every: float = 1.0


def _locust_command() -> list[str]:
    exe = Path(sys.executable).with_name("locust")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "locust"]


def run_step(
    step: Step, target: Target, args: argparse.Namespace, work: Path, console: Console
) -> tuple[dict[str, Any], list[Sample]]:
    """One headless locust run at `step.rate`: what the per-request log, locust, /metrics and
    the process samples say about it, and the samples themselves."""
    stem = re.sub(r"[^A-Za-z0-9]+", "_", step.name).strip("_")
    prefix = work / stem
    request_log = work / f"{stem}_requests.csv"
    command = [
        *_locust_command(),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--users",
        str(step.users),
        "--spawn-rate",
        str(step.users),
        "--run-time",
        f"{step.seconds}s",
        "--stop-timeout",
        f"{args.timeout + 2:g}",
        "--host",
        target.url,
        "--csv",
        str(prefix),
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
        "--rate-per-user",
        f"{step.rate / step.users:.6f}",
        "--arrivals",
        args.arrivals,
        "--repeat-share",
        f"{args.repeat_share:g}",
        "--text-offset",
        str(step.text_offset),
        "--request-log",
        str(request_log),
        "--request-timeout",
        f"{args.timeout:g}",
        "--seed",
        str(args.seed + step.text_offset),
    ]
    console.print(
        f"[bold]{step.name}[/]: {step.rate:g} requests/s for {step.seconds} s "
        f"({step.users} users, {args.arrivals} arrivals)"
    )
    before = scrape(target.url)
    sampler = Sampler(target.pid, step.sample_every)
    sampler.start()
    start = time.monotonic()
    stdout, stderr = work / f"{stem}.out", work / f"{stem}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            cwd=REPO,
            env={**os.environ, "BASTION_LOAD_KEYS": ",".join(target.keys)},
        )
        sampler.watch_locust(proc.pid)
        try:
            proc.wait(step.seconds + args.timeout + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    wall = time.monotonic() - start
    samples = sampler.stop()
    drained = wait_idle(target.url) if target.alive() else 0.0
    after = scrape(target.url) if target.alive() else before
    locust_messages = _read(stderr) + _read(stdout)
    result = {
        "name": step.name,
        "target_rate": step.rate,
        "seconds": step.seconds,
        "users": step.users,
        "rate_per_user": step.rate / step.users,
        "text_offset": step.text_offset,
        "locust_exit_code": proc.returncode,
        "locust_wall_seconds": wall,
        "locust_cpu_warning": "CPU usage" in locust_messages,
        "drain_seconds": drained,
        "server_alive_after": target.alive(),
        **latency_stats(read_requests(request_log, args.timeout)),
        "locust_stats": locust_summary(Path(f"{prefix}_stats.csv")),
        "server_view": server_view(before, after),
        "cpu": cpu_use(samples),
        "rss_mb_start": next((s.tree_rss_mb for s in samples if s.tree_rss_mb is not None), None),
        "rss_mb_after": next(
            (s.tree_rss_mb for s in reversed(samples) if s.tree_rss_mb is not None), None
        ),
    }
    if proc.returncode:
        result["locust_output_tail"] = locust_messages[-3000:]
    return result, samples


# --------------------------------------------------------------------------- reading results


@dataclass
class Requests:
    """The per-request log as arrays: scheduled and actual send (Unix s), latency ms, status, ok."""

    scheduled: np.ndarray
    sent: np.ndarray
    latency_ms: np.ndarray
    status: np.ndarray
    ok: np.ndarray
    errors: dict[str, int]


def read_requests(path: Path, timeout: float) -> Requests:
    rows: list[tuple[float, float, float, int, int]] = []
    errors: dict[str, int] = {}
    if path.exists():
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                if len(row) < 6:
                    continue  # a line cut short when locust was killed
                rows.append((float(row[0]), float(row[1]), float(row[2]), int(row[3]), int(row[4])))
                if row[4] == "0":
                    kind = _error_kind(row[3], row[5], float(row[2]) >= 990 * timeout)
                    errors[kind] = errors.get(kind, 0) + 1
    table = np.array(rows, dtype=float).reshape(-1, 5)
    order = np.argsort(table[:, 1], kind="stable")
    table = table[order]
    return Requests(
        table[:, 0],
        table[:, 1],
        table[:, 2],
        table[:, 3].astype(int),
        table[:, 4].astype(bool),
        errors,
    )


def _error_kind(status: str, message: str, timed_out: bool) -> str:
    if status not in ("", "0"):
        return f"HTTP {status}"
    name = message.split(":", 1)[0] or "transport error"
    return f"client timeout ({name})" if timed_out else name


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


def latency_stats(req: Requests) -> dict[str, Any]:
    """Exact percentiles over the successful requests; the rate at which requests were sent."""
    n = int(req.sent.size)
    span = float(req.sent[-1] - req.sent[0]) if n >= 2 else 0.0
    ok = req.ok
    from_schedule = (req.sent - req.scheduled) * 1000 + req.latency_ms
    return {
        "requests": n,
        "ok": int(ok.sum()),
        "errors": n - int(ok.sum()),
        "error_kinds": req.errors,
        "send_span_seconds": span,
        "achieved_rate": (n - 1) / span if span > 0 else None,
        "ok_rate": (int(ok.sum()) - 1) / span if span > 0 and ok.sum() > 1 else None,
        "latency_ms": _percentiles(req.latency_ms[ok]),
        "latency_from_schedule_ms": _percentiles(from_schedule[ok]),
        "timeline": timeline(req, 10.0),
    }


def timeline(req: Requests, window: float) -> list[dict[str, Any]]:
    """Per `window` seconds of send time: requests, errors, p50 and p99 of the successful ones."""
    if req.sent.size == 0:
        return []
    t = req.sent - req.sent[0]
    out = []
    for k in range(math.ceil((t[-1] + 1e-9) / window)):
        inside = (t >= k * window) & (t < (k + 1) * window)
        good = req.latency_ms[inside & req.ok]
        out.append(
            {
                "from_s": k * window,
                "requests": int(inside.sum()),
                "errors": int((inside & ~req.ok).sum()),
                "p50_ms": float(np.percentile(good, 50)) if good.size else None,
                "p99_ms": float(np.percentile(good, 99)) if good.size else None,
            }
        )
    return out


def locust_summary(path: Path) -> dict[str, Any]:
    """Locust's own 'Aggregated' row (its percentiles are rounded into buckets)."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") == "Aggregated":
                keep = (
                    "Request Count",
                    "Failure Count",
                    "Requests/s",
                    "50%",
                    "95%",
                    "99%",
                    "Max Response Time",
                )
                return {k: _number(row.get(k, "")) for k in keep}
    return {}


def _number(value: str) -> float | str | None:
    try:
        return float(value)
    except ValueError:
        return value or None


def soak_memory(samples: list[Sample], minute: float = 60.0) -> dict[str, Any]:
    """First- and last-minute median RSS (server and children), the slope, and the verdict."""
    points = [(s.t, s.tree_rss_mb) for s in samples if s.tree_rss_mb is not None]
    if len(points) < 4:
        return {"verdict": "not measured (no server process to sample)"}
    t = np.array([p[0] for p in points])
    rss = np.array([p[1] for p in points])
    t -= t[0]
    window = min(minute, t[-1] / 2)
    first = float(np.median(rss[t < window]))
    last = float(np.median(rss[t >= t[-1] - window]))
    slope = float(np.polyfit(t / 60.0, rss, 1)[0])
    allowed = max(0.02 * first, 10.0)
    return {
        "samples": len(points),
        "seconds": float(t[-1]),
        "window_seconds": float(window),
        "first_window_median_mb": first,
        "last_window_median_mb": last,
        "change_mb": last - first,
        "allowed_mb": allowed,
        "slope_mb_per_min": slope,
        "min_mb": float(rss.min()),
        "max_mb": float(rss.max()),
        "verdict": "no growth" if last - first <= allowed else "growth",
        "rss_mb_every_sample": [round(float(v), 1) for v in rss],
    }


# --------------------------------------------------------------------------- reporting


def goal(row: dict[str, Any], p99_ms: float) -> tuple[bool, str]:
    """p99 under `p99_ms`, no errors, and 95 % of the target rate sent."""
    reasons = []
    p99 = row["latency_ms"]["p99"]
    if p99 is None or p99 >= p99_ms:
        reasons.append("p99")
    if row["errors"]:
        reasons.append("errors")
    if (row["achieved_rate"] or 0.0) < 0.95 * row["target_rate"]:
        reasons.append("rate")
    return not reasons, "yes" if not reasons else "no (" + ", ".join(reasons) + ")"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


COLUMNS = (
    "step",
    "target/s",
    "achieved/s",
    "requests",
    "errors",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "p99 from schedule ms",
    "server CPU",
    "other CPU",
    "goal met?",
)


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        lat = r["latency_ms"]
        out.append(
            [
                r["name"],
                f"{r['target_rate']:g}",
                "-" if r["achieved_rate"] is None else f"{r['achieved_rate']:.1f}",
                str(r["requests"]),
                str(r["errors"]),
                _ms(lat["p50"]),
                _ms(lat["p95"]),
                _ms(lat["p99"]),
                _ms(lat["max"]),
                _ms(r["latency_from_schedule_ms"]["p99"]),
                _cores(r["cpu"]["server_cores"]),
                _cores(r["cpu"]["other_cores"]),
                r["goal"],
            ]
        )
    return out


def _markdown(result: dict[str, Any]) -> str:
    meta, cfg = result["meta"], result["config"]
    source = meta["bastion_source"]
    source = "" if source == str(REPO / "src" / "bastion") else f"; bastion from {source}"
    lines = [
        f"Date {meta['date']}; {meta['machine']}; {meta['cpu_count']} CPUs; load average "
        f"{meta['load_average_before'][0]:.2f} before, {meta['load_average_after'][0]:.2f} after; "
        f"git {meta['git']}; model {meta['server'].get('model_version')}, policy "
        f"{meta['server'].get('policy_version')}; locust {meta['versions'].get('locust')}, "
        f"uvicorn {meta['versions'].get('uvicorn')}; {cfg['arrivals']} arrivals, "
        f"repeat share {cfg['repeat_share']:g}, {cfg['keys']} API key(s), "
        f"client timeout {cfg['timeout']:g} s; {cfg.get('workers', 1)} server worker(s){source}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 2) + "---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result["steps"])]
    soak = result.get("soak_memory")
    if soak and "first_window_median_mb" in soak:
        lines += [
            "",
            f"Soak memory (server and children, RSS every {cfg['soak_sample_seconds']:g} s over "
            f"{soak['seconds']:.0f} s): first {soak['window_seconds']:.0f} s median "
            f"{soak['first_window_median_mb']:.1f} MB, last {soak['window_seconds']:.0f} s median "
            f"{soak['last_window_median_mb']:.1f} MB ({soak['change_mb']:+.1f} MB, allowed "
            f"{soak['allowed_mb']:.1f}), slope {soak['slope_mb_per_min']:+.2f} MB/min: "
            f"**{soak['verdict']}**.",
        ]
    return "\n".join(lines) + "\n"


def _server_problems(target: Target) -> dict[str, Any]:
    if target.log is None:
        return {}
    text = _read(target.log)
    return {
        "tracebacks": text.count("Traceback (most recent call last)"),
        "error_lines": sum("ERROR" in line for line in text.splitlines()),
        "warning_lines": sum("WARNING" in line for line in text.splitlines()),
        "log_tail": re.sub(r"bst_\S+", "bst_…", _tail(target.log, 40)),  # no keys in results
    }


# --------------------------------------------------------------------------- main


def _rates(text: str) -> list[float]:
    return [float(r) for r in text.replace(" ", "").split(",") if r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="50,100,200", help="requests/s per step ('' for none)")
    parser.add_argument("--duration", type=int, default=30, help="seconds per step")
    parser.add_argument("--soak", type=int, default=0, help="soak seconds (0: none; full: 600)")
    parser.add_argument("--soak-rate", type=float, default=100.0, help="requests/s in the soak")
    parser.add_argument(
        "--soak-sample", type=float, default=5.0, help="seconds between RSS samples"
    )
    parser.add_argument("--repeat-share", type=float, default=0.0, help="share of repeated texts")
    parser.add_argument("--arrivals", choices=("uniform", "poisson"), default="uniform")
    parser.add_argument("--rate-per-user", type=float, default=1.0, help="requests/s per user")
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout, seconds")
    parser.add_argument("--warmup", type=int, default=100, help="sequential warm-up requests")
    parser.add_argument("--goal-p99-ms", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="a running server instead of starting one")
    parser.add_argument("--key", action="append", default=[], help="API key (repeatable)")
    parser.add_argument("--pid", type=int, help="the running server's process, to sample")
    parser.add_argument(
        "--keys", type=int, default=0, help="API keys to spread the load over (0: one per 50/s)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="server worker processes (default: one per CPU)"
    )
    parser.add_argument("--out", default="bench/out/serve_load.json")
    args = parser.parse_args()
    rates = _rates(args.rates)
    if not rates and not args.soak:
        parser.error("nothing to run: give --rates or --soak")
    if args.url and not args.key:
        parser.error("--url needs --key")
    if not 0.0 <= args.repeat_share <= 1.0:
        parser.error("--repeat-share is a fraction in [0, 1]")
    if args.soak and args.soak < 60:
        parser.error("--soak needs at least 60 s (two windows to compare)")
    if min([*rates, args.soak_rate]) <= 0 or args.duration < 5:
        parser.error("rates must be positive and --duration at least 5 s")
    console = Console(width=200)
    top_rate = max([*rates, args.soak_rate if args.soak else 0.0])
    n_keys = args.keys or max(1, math.ceil(top_rate / KEY_SHARE_OF_LIMIT))

    # Distinct texts per step: each step starts where the previous one's budget ends.
    plan: list[Step] = []
    offset = 0
    for rate in rates:
        users = max(1, math.ceil(rate / args.rate_per_user))
        plan.append(Step(f"{rate:g}/s", rate, args.duration, users, offset))
        offset += math.ceil(rate * (args.duration + args.timeout) * 1.5)
    if args.soak:
        users = max(1, math.ceil(args.soak_rate / args.rate_per_user))
        plan.append(
            Step(
                f"soak {args.soak_rate:g}/s",
                args.soak_rate,
                args.soak,
                users,
                offset,
                args.soak_sample,
            )
        )
        offset += math.ceil(args.soak_rate * (args.soak + args.timeout) * 1.5)
    if offset > DISTINCT:
        console.print(f"note: over {DISTINCT:,} texts, later ones carry a counter to stay distinct")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bastion-bench-serve-") as tmp:
        work = Path(tmp)
        if args.url:
            target = Target(args.url.rstrip("/"), list(args.key), args.pid)
        else:
            home = work / "home"
            home.mkdir()
            target = start_server(home, extra_keys=n_keys - 1, workers=args.workers)
            console.print(
                f"server ready at {target.url} in {target.started_seconds:.1f} s "
                f"(pid {target.pid}, {len(target.keys)} keys)"
            )
        if len(target.keys) * 100 < top_rate:
            console.print(
                f"[yellow]note: {top_rate:g}/s over {len(target.keys)} key(s) is more than the "
                "default rate limit (6,000 a minute per key) refills: expect 429s once a key's "
                "burst allowance is spent[/]"
            )
        rows: list[dict[str, Any]] = []
        soak: dict[str, Any] = {}
        try:
            start = time.monotonic()
            warm = warm_up(target, args.warmup, text_offset=offset)  # after the steps' texts
            console.print(
                f"warm-up: {args.warmup} requests in {time.monotonic() - start:.1f} s, first "
                f"{_ms(warm['first_ms'])} ms, median of the last quarter "
                f"{_ms(warm['median_last_quarter_ms'])} ms"
            )
            wait_idle(target.url)
            for step in plan:
                row, samples = run_step(step, target, args, work, console)
                row["goal_met"], row["goal"] = goal(row, args.goal_p99_ms)
                if step.name.startswith("soak"):
                    soak = soak_memory(samples)
                    if soak.get("verdict") == "growth":
                        row["goal_met"], row["goal"] = False, row["goal"] + "; memory grew"
                rows.append(row)
                console.print(
                    f"  {row['requests']} requests, {row['errors']} errors, p99 "
                    f"{_ms(row['latency_ms']['p99'])} ms, achieved "
                    f"{row['achieved_rate'] or 0:.1f}/s; server CPU "
                    f"{_cores(row['cpu']['server_cores'])}, other {_cores(row['cpu']['other_cores'])}"
                )
                if not target.alive():
                    console.print("[red]the server is gone; stopping[/]")
                    break
        finally:
            problems = _server_problems(target)
            exit_code = stop_server(target)
    load_after = os.getloadavg()

    table = Table(*COLUMNS, title="POST /v1/moderations, one short text per request")
    for values in table_rows(rows):
        table.add_row(*values)
    console.print(table)
    if soak:
        console.print(
            f"soak memory: {json.dumps({k: v for k, v in soak.items() if k != 'rss_mb_every_sample'})}"
        )
    hundred = next(
        (r for r in rows if r["target_rate"] == 100.0 and not r["name"].startswith("soak")), None
    )
    if hundred is not None:
        console.print(
            f"goal at 100 requests/s (p99 < {args.goal_p99_ms:g} ms, 0 errors): {hundred['goal']}"
        )

    result = {
        "meta": {
            "date": date.today().isoformat(),
            "machine": machine(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_before": list(load_before),
            "load_average_after": list(load_after),
            "versions": versions(
                "bastion", "locust", "uvicorn", "fastapi", "starlette", "torch", "onnxruntime"
            ),
            "git": git(),
            "bastion_source": str(Path(bastion.__file__).parent),
            "server": {
                "url": target.url,
                "started_here": target.proc is not None,
                "ready_seconds": target.started_seconds,
                "exit_code": exit_code,
                "policy_version": warm.get("policy_version"),
                "model_version": warm.get("model_version"),
                "models_loaded": warm.get("models_loaded"),
                **problems,
            },
        },
        "config": {
            "rates": rates,
            "duration": args.duration,
            "soak": args.soak,
            "soak_rate": args.soak_rate,
            "soak_sample_seconds": args.soak_sample,
            "workers": args.workers or available_cpus(),
            "repeat_share": args.repeat_share,
            "arrivals": args.arrivals,
            "rate_per_user": args.rate_per_user,
            "timeout": args.timeout,
            "warmup": args.warmup,
            "keys": len(target.keys),
            "goal_p99_ms": args.goal_p99_ms,
            "percentiles": "exact, numpy linear interpolation over the successful requests "
            "of the per-request log (locust's bucketed ones under locust_stats)",
            "command": " ".join(sys.argv),
        },
        "warm_up": warm,
        "steps": rows,
        "soak_memory": soak,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    md = out.with_suffix(".md")
    md.write_text(_markdown(result), encoding="utf-8")
    console.print(f"wrote {out} and {md}")


if __name__ == "__main__":
    main()
