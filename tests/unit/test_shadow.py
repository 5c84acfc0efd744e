"""The shadow's pure parts and its queue, with a stand-in shadow server (a real tornado HTTP
server answering as a model would; the real runtimes are in tests/component): which requests
fall in a share, what a comparison sums up, the share's range, and a full queue that drops and
counts instead of waiting."""

import asyncio
import datetime
import json

import pytest
from sqlalchemy import create_engine
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from mlhub.deployers.base import ModelRef
from mlhub.errors import BadRequest
from mlhub.publisher.shadow import (
    SHADOW_PERCENTS,
    Shadower,
    ShadowJob,
    ShadowLog,
    chosen,
    summary,
)
from mlhub.publisher.views import check_share

IRIS = ModelRef("alice", "iris", "shadow")


def test_a_share_chooses_about_that_many_requests_and_always_the_same():
    ids = [f"{i:016x}" for i in range(20_000)]
    picked = [i for i in ids if chosen(i, 0.1)]
    assert 1800 <= len(picked) <= 2200
    assert picked == [i for i in ids if chosen(i, 0.1)]  # stable per request
    assert all(chosen(i, 1.0) for i in ids[:100]) and not any(chosen(i, 0.0) for i in ids[:100])


def row(request, agree, production_ms=2.0, shadow_ms=3.0, status=200):
    return {
        "request": request,
        "agree": agree,
        "production_ms": production_ms,
        "shadow_ms": shadow_ms,
        "shadow_status": status,
    }


def test_the_summary_counts_agreement_over_compared_rows_and_latency_per_request():
    rows = [row("a", True), row("a", False), row("b", True, 4.0, 9.0), row("c", False, status=500)]
    assert summary(rows, dropped=3) == {
        "rows": 4,
        "compared": 3,
        "agree": 2,
        "agreement": 2 / 3,
        "shadow_errors": 1,
        "dropped": 3,
        "production_p50_ms": 2.0,
        "production_p95_ms": 4.0,
        "shadow_p50_ms": 3.0,
        "shadow_p95_ms": 9.0,
    }
    assert summary([])["agreement"] is None


@pytest.mark.parametrize("bad", [0, 100.5, "x", None, False])
def test_a_shadow_share_is_a_percentage(bad):
    with pytest.raises(BadRequest):
        check_share(bad, SHADOW_PERCENTS, "")
    assert check_share(100, SHADOW_PERCENTS, "") == 100.0


class Doubling(RequestHandler):
    """A stand-in model that answers twice each row's first input, after ``delay`` s."""

    delay = 0.0
    seen = []
    calls = []  # rows per call

    async def post(self):
        await asyncio.sleep(self.delay)
        Doubling.seen.append(self.request.headers.get("Authorization"))
        rows = json.loads(self.request.body)["instances"]
        Doubling.calls.append(len(rows))
        if any(r[0] < 0 for r in rows):  # refuses the whole request, as a runtime does
            self.set_status(400)
            self.write({"error": "negative input", "code": "bad_request", "detail": None})
            return
        self.write({"predictions": [2 * r[0] for r in rows]})


def job(url, request="r1", inputs=([1.0],), outputs=(2.0,)):
    async def target():
        return url

    return ShadowJob(
        model=IRIS,
        request=request,
        time=datetime.datetime(2026, 12, 7, 10, 0),
        inputs=list(inputs),
        outputs=list(outputs),
        production_version="sha256:aa",
        shadow_version="sha256:bb",
        production_ms=1.5,
        key="mlhk_shadow",
        target=target,
    )


async def test_the_queue_sends_compares_and_drops_what_it_cannot_hold(tmp_path):
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/predict", Doubling)]))
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{port}/predict"
    log = ShadowLog(create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    shadower = Shadower(log, queue_size=2, concurrency=1)
    try:
        shadower.offer(job(url, "r1", [[1.0], [5.0]], [2.0, 9.0]))
        await asyncio.sleep(0.3)
        rows = log.read(IRIS)
        assert [(r["row"], r["production"], r["shadow"], r["agree"]) for r in rows] == [
            (0, 2.0, 2.0, True),
            (1, 9.0, 10.0, False),
        ]
        assert rows[0]["shadow_status"] == 200 and rows[0]["shadow_ms"] > 0
        assert Doubling.seen == ["Bearer mlhk_shadow"]
        # a shadow that is not serving: the row says so
        shadower.offer(job(None, "gone"))
        await asyncio.sleep(0.1)
        gone = [r for r in log.read(IRIS) if r["request"] == "gone"]
        assert gone[0]["shadow_status"] == 0 and "not serving" in gone[0]["shadow_error"]
        # a slow shadow: the queue holds two, the rest are dropped and counted, at once
        Doubling.delay = 0.5
        for i in range(6):
            shadower.offer(job(url, f"slow{i}"))
        assert shadower.dropped == {"alice/iris": 4}  # two queued (offer never waits)
    finally:
        Doubling.delay = 0.0
        await asyncio.sleep(2)
        await shadower.stop()
        server.stop()
    assert {r["request"] for r in log.read(IRIS)} >= {"slow0", "slow1"}


async def test_waiting_requests_go_in_batches_and_a_refused_batch_request_by_request(tmp_path):
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/predict", Doubling)]))
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{port}/predict"
    log = ShadowLog(create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    shadower = Shadower(log, queue_size=100, concurrency=1, batch_requests=64)
    Doubling.calls.clear()
    try:
        for i in range(6):  # offered at once: one goes alone, five wait
            shadower.offer(job(url, f"r{i}", [[float(i)]], [2.0 * i]))
        await asyncio.sleep(0.5)
        assert Doubling.calls == [1, 5]
        rows = {r["request"]: r for r in log.read(IRIS)}
        assert all(r["agree"] and r["shadow_status"] == 200 for r in rows.values())
        assert rows["r0"]["shadow_ms"] > 0  # alone: the shadow's latency
        assert [rows[f"r{i}"]["shadow_ms"] for i in range(1, 6)] == [None] * 5
        Doubling.calls.clear()
        for i, value in enumerate([1.0, 2.0, -1.0, 3.0]):  # the third is refused
            shadower.offer(job(url, f"b{i}", [[value]], [2.0 * value]))
        await asyncio.sleep(0.5)
        assert Doubling.calls == [1, 3, 1, 1, 1]  # the refused batch, again one by one
        rows = {r["request"]: r for r in log.read(IRIS)}
        assert rows["b2"]["shadow_status"] == 400 and rows["b2"]["shadow_error"] == "negative input"
        assert [rows[f"b{i}"]["agree"] for i in (0, 1, 3)] == [True, True, True]
    finally:
        await shadower.stop()
        server.stop()
