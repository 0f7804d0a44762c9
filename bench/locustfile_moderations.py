"""Locust users for bench/serve_load.py: single short texts to POST /v1/moderations at a set rate.

Run by bench/serve_load.py, one headless locust process per step, e.g.

    BASTION_LOAD_KEYS=bst_... locust -f bench/locustfile_moderations.py --headless \\
        -u 100 -r 100 -t 30s --host http://127.0.0.1:8000 --rate-per-user 1 \\
        --request-log /tmp/step.csv

Pacing. Each user keeps a schedule: its first request at a random phase within one period (so
the users' requests are spread over the second, not fired together), then one every period
(`--arrivals uniform`, what `constant_throughput` does) or at exponential gaps (`--arrivals
poisson`: the aggregate of the users is then a Poisson stream). A user whose response came
back late sends its next request at once and keeps its schedule, rather than restarting the
clock as `constant_throughput` would, so a slow server is still offered the target rate (as
far as users are free: one request in flight per user) and the wait it caused is measured.

Measuring. Locust rounds response times into buckets for its own percentiles (to 1 ms under
100 ms, 10 ms under 1 s, 100 ms above), so every request is also written to `--request-log`
as one CSV row: scheduled send time, actual send time (Unix seconds), response time in ms
(float, perf_counter), HTTP status (0 when none came back), ok (200 with a `results` body),
and the error. bench/serve_load.py computes exact percentiles from it, and the latency from the
scheduled time, which includes any wait a slow server imposed on the schedule (coordinated
omission).

Keys come in the environment (`BASTION_LOAD_KEYS`, comma-separated) so they do not show in
`ps`; users take them in turn, to spread the load over each key's rate limit.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import random
import time
from typing import IO, Any

from locust import FastHttpUser, events, task
from locust.env import Environment

from serve_load_texts import HOT_SET, short_post  # this file's folder is on sys.path

KEYS = [k for k in os.environ.get("BASTION_LOAD_KEYS", "").split(",") if k]
_user_numbers = itertools.count()
_text_numbers: itertools.count[int] = itertools.count()
_log: dict[str, Any] = {"file": None, "writer": None}


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate-per-user", type=float, default=1.0, help="requests/s per user")
    parser.add_argument("--arrivals", choices=("uniform", "poisson"), default="uniform")
    parser.add_argument("--repeat-share", type=float, default=0.0, help="share of repeated texts")
    parser.add_argument("--text-offset", type=int, default=0, help="first text index to use")
    parser.add_argument("--request-log", default="", help="CSV file, one row per request")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0)


def _init(environment: Environment, **_: Any) -> None:
    global _text_numbers
    options = environment.parsed_options
    if options is None:
        return
    _text_numbers = itertools.count(options.text_offset)
    ModerationsUser.network_timeout = options.request_timeout
    ModerationsUser.connection_timeout = options.request_timeout
    if options.request_log:
        handle: IO[str] = open(options.request_log, "w", newline="", encoding="utf-8")  # noqa: SIM115
        _log["file"] = handle
        _log["writer"] = csv.writer(handle)


def _record(
    response_time: float,
    response: Any,
    context: dict[str, Any],
    exception: BaseException | None,
    start_time: float,
    **_: Any,
) -> None:
    writer = _log["writer"]
    if writer is None:
        return
    status = getattr(response, "status_code", 0) or 0
    error = "" if exception is None else f"{type(exception).__name__}: {exception}"[:200]
    writer.writerow(
        [
            f"{context.get('scheduled', start_time):.6f}",
            f"{start_time:.6f}",
            f"{response_time:.3f}",
            status,
            int(exception is None),
            error,
        ]
    )


def _close(**_: Any) -> None:
    handle = _log["file"]
    if handle is not None:
        handle.close()
        _log["file"] = _log["writer"] = None


# locust's EventHook.add_listener has no annotations, hence the ignores.
events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
events.init.add_listener(_init)  # type: ignore[no-untyped-call]
events.request.add_listener(_record)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_close)  # type: ignore[no-untyped-call]


class ModerationsUser(FastHttpUser):
    """One client: a short text at a time, on its own schedule, with one of the keys."""

    network_timeout = 10.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        assert options is not None
        number = next(_user_numbers)
        self.rng = random.Random(options.seed * 1_000_003 + number)
        self.period = 1.0 / options.rate_per_user
        self.poisson = options.arrivals == "poisson"
        self.repeat_share = options.repeat_share
        key = KEYS[number % len(KEYS)] if KEYS else ""
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.next_at = time.time() + self.rng.uniform(0.0, self.period)
        time.sleep(max(0.0, self.next_at - time.time()))  # gevent's sleep: locust patches time

    def wait_time(self) -> float:
        return max(0.0, self.next_at - time.time())

    def _gap(self) -> float:
        return self.rng.expovariate(1.0 / self.period) if self.poisson else self.period

    @task
    def moderate(self) -> None:
        scheduled = self.next_at
        self.next_at += self._gap()
        if self.repeat_share > 0 and self.rng.random() < self.repeat_share:
            text = self.rng.choice(HOT_SET)
        else:
            text = short_post(next(_text_numbers))
        with self.client.post(
            "/v1/moderations",
            json={"input": text},
            headers=self.headers,
            name="/v1/moderations",
            context={"scheduled": scheduled},
            catch_response=True,
        ) as response:
            body = response.content or b""
            if response.status_code == 200 and b'"results"' in body:
                response.success()
            elif response.status_code:  # status 0: keep the transport error (timeout, reset)
                response.failure(f"HTTP {response.status_code}: {body[:120]!r}")
