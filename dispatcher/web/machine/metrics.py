"""``/metrics`` for Prometheus and ``/healthz`` for whatever watches the process.

Every scrape reads the store afresh (the numbers are the database's, shared by every worker
and every web process), in a worker thread: the store is synchronous. The registry is the app's
own, never prometheus-client's global one, so two apps in one process do not mix.

``/metrics`` needs no browser login but is not public: it wants ``Authorization: Bearer TOKEN``
with the token from ``DISPATCHER_METRICS_TOKEN``; without that variable it does not exist (404).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from dispatcher.sending import forecast
from dispatcher.settings import Settings
from dispatcher.web.auth import current_user
from dispatcher.web.bearer import holds_token, refusal
from dispatcher.web.context import Context, context

log = logging.getLogger("dispatcher.web")

# The classic text format (what generate_latest writes): every Prometheus version reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# An SMTP conversation takes tenths of a second; a fax submission (PDF upload) a few seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StoreCollector(Collector):
    """Reads the store on each collect: attempts, queues, latency, fax failures, workers."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterable[Metric]:
        store, reports = self.ctx.store, self.ctx.store.reports

        attempts = CounterMetricFamily(
            "dispatcher_attempts",
            "Attempts to deliver a letter, by action, channel and outcome.",
            labels=["action", "channel", "outcome"],
        )
        for action, channel, outcome, n in reports.outcome_counts():
            attempts.add_metric([action, channel, outcome], n)
        yield attempts

        depth: dict[tuple[str, str, str], int] = {}
        for q in store.queue_counts():
            key = (q.action_id, q.channel, q.status)
            depth[key] = depth.get(key, 0) + q.count
        deliveries = GaugeMetricFamily(
            "dispatcher_deliveries",
            "Deliveries (one letter to one target by one channel) by action, channel and status.",
            labels=["action", "channel", "status"],
        )
        for key, n in sorted(depth.items()):
            deliveries.add_metric(list(key), n)
        yield deliveries

        latency = HistogramMetricFamily(
            "dispatcher_attempt_seconds",
            "How long the dispatcher's attempts took (an SMTP conversation, a fax submission).",
            labels=["channel"],
        )
        for channel, h in sorted(reports.attempt_latency(LATENCY_BUCKETS).items()):
            buckets = [(repr(float(b)), float(n)) for b, n in zip(LATENCY_BUCKETS, h.at_most, strict=True)]
            latency.add_metric([channel], [*buckets, ("+Inf", float(h.count))], h.seconds)
        yield latency

        failures = CounterMetricFamily(
            "dispatcher_fax_failures",
            "Fax attempts that failed or wait for a retry, by provider and failure.",
            labels=["provider", "failure"],
        )
        for provider, failure, n in reports.fax_failures():
            failures.add_metric([provider, failure], n)
        yield failures

        now = self.ctx.clock()
        seen = GaugeMetricFamily(
            "dispatcher_worker_last_seen_seconds",
            "When a dispatcher last said it was alive (unix time).",
            labels=["worker"],
        )
        holding = GaugeMetricFamily(
            "dispatcher_worker_holding", "Letters a dispatcher holds (leased or queued).", labels=["worker"]
        )
        up = GaugeMetricFamily(
            "dispatcher_worker_up",
            f"1 if a dispatcher is running: not stopped, seen in the last {forecast.SILENT.seconds} s.",
            labels=["worker"],
        )
        for w in store.workers():
            seen.add_metric([w.worker_id], w.last_seen.timestamp())
            holding.add_metric([w.worker_id], w.holding)
            running = w.stopped_at is None and now - w.last_seen <= forecast.SILENT
            up.add_metric([w.worker_id], 1.0 if running else 0.0)
        yield from (seen, holding, up)


def _metrics_token(settings: Settings) -> SecretStr | None:
    return settings.metrics_token


def _unauthorised(challenge: Mapping[str, str]) -> Response:
    return PlainTextResponse("a bearer token is needed\n", status_code=401, headers=dict(challenge))


def _registry(request: Request) -> CollectorRegistry:
    """The app's own registry, made at its first scrape (no await in between: no race)."""
    state = request.app.state
    registry = cast(CollectorRegistry | None, getattr(state, "metrics_registry", None))
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(context(request)))
        state.metrics_registry = registry
    return registry


async def metrics(request: Request) -> Response:
    refused = refusal(request, _metrics_token, "metrics", _unauthorised)
    if refused is not None:
        return refused
    try:
        body = await run_in_threadpool(generate_latest, _registry(request))
    except SQLAlchemyError as exc:
        log.error("/metrics: the store did not answer: %s", exc)
        return PlainTextResponse("store unavailable\n", status_code=503)
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def _silent(ctx: Context) -> list[tuple[str, int]]:
    """Dispatchers that never said they stopped but went silent, and for how many seconds."""
    ctx.store.action_states()  # the trivial read: raises if the store does not answer
    workers, now = ctx.store.workers(), ctx.clock()
    return [(w.worker_id, int((now - w.last_seen).total_seconds())) for w in forecast.silent(workers, now)]


async def _insider(request: Request) -> bool:
    """A logged-in user or the metrics scraper: they may read worker ids (hostname:pid)."""
    return holds_token(request, _metrics_token) or await current_user(request) is not None


async def health(request: Request) -> Response:
    """200 if the store answers a trivial read, else 503 (the reason goes to the log only).

    The body says how many dispatchers went silent, naming them to a logged-in user or the
    metrics token only (ids are hostname:pid); with ``?workers=1`` they make it 503 too, for a
    monitor of the senders (the plain check stays about this web process, so a load balancer
    does not take the dashboard away when it is needed most)."""
    headers = {"Cache-Control": "no-store"}
    try:
        quiet = await run_in_threadpool(_silent, context(request))
    except SQLAlchemyError as exc:
        log.error("/healthz: the store did not answer: %s", exc)
        return PlainTextResponse("store unavailable\n", status_code=503, headers=headers)
    if not quiet:
        return PlainTextResponse("ok\n", headers=headers)
    lines = [f"{len(quiet)} dispatcher silent" if len(quiet) == 1 else f"{len(quiet)} dispatchers silent"]
    if await _insider(request):
        lines += [
            f"dispatcher {worker} silent for {seconds} s (stopped, frozen or unable to reach the store)"
            for worker, seconds in quiet
        ]
    status = 503 if request.query_params.get("workers") == "1" else 200
    return PlainTextResponse("\n".join(["store ok", *lines]) + "\n", status, headers=headers)


routes = [
    Route("/healthz", health),
    Route("/metrics", metrics),
]
