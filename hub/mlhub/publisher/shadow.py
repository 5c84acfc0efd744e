"""Shadow traffic: a sample of production's requests, sent again to another version, whose
answers are kept beside production's and never returned to anyone.

Production's serving processes already hand a sample of their requests, with their answers,
to the publisher off the request's path (the inference log's sender, ``mlhub.serving
.inferencelog``: a bounded buffer, a thread, a batch every 2 s). A shadow raises that sample to
its share, and the publisher sends each shadowed request to the shadow version's own processes
(the alias ``shadow``) from a bounded queue: callers never wait for the shadow, never get its
answer, and what the queue cannot take is dropped and counted. The shadow's answer, its status
and latency are stored beside production's (``ShadowLog``), which ``mlhub.compare`` reads as a
DataFrame. Requests that wait for a slow shadow go to it in batches (``batch_requests``): the
shadow's latency is measured on the requests sent alone.

The shadow answers seconds after production did, with the same inputs: a comparison of the
two versions' answers and of their latency on the same machine, not of production's latency
under the same instant's load.
"""

import asyncio
import datetime
import json
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import JSON, Column, Float, Integer, String, Text
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float as FloatTrait
from traitlets import Integer as IntegerTrait
from traitlets.config import LoggingConfigurable

from mlhub.bundle.parity import same_answer
from mlhub.deployers.canary_front import percentile
from mlhub.publisher.inference_log import MAX_READ_ROWS, ModelRows

SHADOW_PERCENTS = (0.01, 100.0)  # a shadow's share of production's requests, in percent


def chosen(request_id, share):
    """Whether the request ``request_id`` falls in ``share`` (0..1) of all requests: stable per
    request, so the rows of one request go together."""
    return zlib.crc32(request_id.encode()) / 2**32 < share


def summary(rows, dropped=0):
    """What ``rows`` (``ShadowLog.read``) say of the two versions: how many rows were compared,
    how many answers agree, and each version's latency (per request)."""
    compared = [r for r in rows if r["shadow_status"] == 200]
    agree = sum(1 for r in compared if r["agree"])
    per_request = {}
    for r in rows:
        per_request.setdefault(r["request"], (r["production_ms"], r["shadow_ms"], r))
    production = sorted(p for p, _, _ in per_request.values() if p is not None)
    shadow = sorted(s for _, s, _ in per_request.values() if s is not None)
    return {
        "rows": len(rows),
        "compared": len(compared),
        "agree": agree,
        "agreement": agree / len(compared) if compared else None,
        "shadow_errors": sum(1 for r in rows if r["shadow_status"] != 200),
        "dropped": dropped,
        "production_p50_ms": percentile(production, 0.5),
        "production_p95_ms": percentile(production, 0.95),
        "shadow_p50_ms": percentile(shadow, 0.5),
        "shadow_p95_ms": percentile(shadow, 0.95),
    }


class ShadowLog(ModelRows):
    """The compared rows, in the table ``shadow_log`` of the publisher's database."""

    def __init__(self, engine):
        super().__init__(
            engine,
            "shadow_log",
            Column("request", String(32)),
            Column("row", Integer),
            Column("production_version", String(71)),
            Column("shadow_version", String(71)),
            Column("inputs", JSON),
            Column("production", JSON),
            Column("shadow", JSON),
            Column("agree", Integer),
            Column("production_ms", Float),
            Column("shadow_ms", Float),
            Column("shadow_status", Integer),
            Column("shadow_error", Text),
        )

    def read(self, model, *, since=None, limit=MAX_READ_ROWS):
        rows = super().read(model, since=since, limit=limit)
        for r in rows:
            r["agree"] = bool(r["agree"])
        return rows


class Shadower(LoggingConfigurable):
    """The queue of requests to shadow and the workers that send them (``c.Shadower.*``)."""

    queue_size = IntegerTrait(
        10_000,
        help="""Requests waiting for their shadow at most (default 10000: production's
        processes hand over what they answered every 2 s, so a busy model's requests arrive
        in bursts); more are dropped and counted (the shadow is slower than production, or
        not answering).""",
    ).tag(config=True)

    concurrency = IntegerTrait(
        2,
        help="""Predict calls to shadows at once (default 2): the shadow's load on the machine
        or cluster stays bounded whatever production's traffic.""",
    ).tag(config=True)

    batch_requests = IntegerTrait(
        64,
        help="""Requests waiting for a shadow sent to it together, in one predict call, at
        most (default 64): a shadow that keeps up gets each request alone (its latency is
        measured on each), one that falls behind gets one alone and the waiting ones in
        batches, so it costs the machine far less than production did. A batch it refuses is
        sent again request by request.""",
    ).tag(config=True)

    timeout = FloatTrait(
        30.0, help="Seconds a shadow may take to answer one request (default 30)."
    ).tag(config=True)

    def __init__(self, log_store, **kwargs):
        super().__init__(**kwargs)
        self.store = log_store
        self.queue = None
        self.dropped = {}  # model key -> requests dropped since the shadow started
        self._workers = []

    def start(self):
        self.queue = asyncio.Queue(self.queue_size)
        self._workers = [asyncio.ensure_future(self._work()) for _ in range(self.concurrency)]

    async def stop(self):
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def offer(self, job):
        """Queue ``job`` (``ShadowJob``) unless the queue is full (then it is counted)."""
        if self.queue is None:
            self.start()
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped[job.model.key] = self.dropped.get(job.model.key, 0) + 1

    async def _work(self):
        while True:
            job = await self.queue.get()
            try:
                await self._send([job])  # alone: its time is the shadow's latency
                waiting = []
                while len(waiting) < self.batch_requests and not self.queue.empty():
                    waiting.append(self.queue.get_nowait())
                groups = {}
                for other in waiting:
                    groups.setdefault((other.model, other.shadow_version), []).append(other)
                for jobs in groups.values():
                    await self._send(jobs)
            except Exception:
                self.log.exception("shadowing requests of %s failed", job.model.key)

    async def _send(self, jobs):
        """Send the rows of ``jobs`` (one shadow's) in one request and keep the answers; a
        batch the shadow refuses is sent again request by request, so each request gets its
        own answer (one bad request does not fail the others)."""
        target = await jobs[0].target()
        instances = [row for job in jobs for row in job.inputs]
        status, answers, error, ms = await self._post(target, jobs[0].key, instances)
        if len(jobs) > 1 and status != 200:
            for job in jobs:
                await self._send([job])
            return
        rows, start = [], 0
        for job in jobs:
            answered = answers[start : start + len(job.inputs)] if answers else []
            start += len(job.inputs)
            for i, (inputs, production) in enumerate(zip(job.inputs, job.outputs, strict=True)):
                shadow = answered[i] if i < len(answered) else None
                rows.append(
                    {
                        "time": job.time,
                        "request": job.request,
                        "row": i,
                        "production_version": job.production_version,
                        "shadow_version": job.shadow_version,
                        "inputs": inputs,
                        "production": production,
                        "shadow": shadow,
                        "agree": int(status == 200 and same_answer(production, shadow)),
                        "production_ms": job.production_ms,
                        # a batch's time is no request's latency
                        "shadow_ms": round(ms, 3) if len(jobs) == 1 else None,
                        "shadow_status": status,
                        "shadow_error": error,
                    }
                )
        await asyncio.to_thread(self.store.write, jobs[0].model, rows)

    async def _post(self, target, key, instances):
        """``(status, predictions, error, ms)`` of one predict call to the shadow."""
        started = time.perf_counter()
        status, answers, error = 0, None, None
        if target is None:
            error = "the shadow is not serving (no route)"
        else:
            request = HTTPRequest(
                target,
                method="POST",
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                body=json.dumps({"instances": instances}),
                request_timeout=self.timeout,
            )
            try:
                resp = await AsyncHTTPClient().fetch(request)
                status, answers = resp.code, json.loads(resp.body).get("predictions")
            except HTTPClientError as exc:
                status = exc.code
                error = _error_of(exc)
            except (OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        if not isinstance(answers, list) or len(answers) != len(instances):
            answers = None
        return status, answers, error, (time.perf_counter() - started) * 1000


def _error_of(exc):
    try:
        return json.loads(exc.response.body).get("error") or str(exc)
    except (AttributeError, ValueError, TypeError):
        return str(exc)


@dataclass
class ShadowJob:
    """One production request to send to ``model``'s shadow: its rows' ``inputs`` and
    production's answers (``outputs``); ``target()`` finds the shadow's predict URL at send
    time, ``key`` is the credential to call it with."""

    model: object  # ModelRef
    request: str
    time: datetime.datetime
    inputs: list
    outputs: list
    production_version: str
    shadow_version: str
    production_ms: float
    key: str
    target: Callable[[], Awaitable[str | None]]
