"""What a shadow costs production's callers: throughput and latency through the public URL with
no shadow, and with a shadow taking every request or a tenth of them.

The issue's target: under 5% of a small model's throughput and under 1 ms of p99 latency at one
connection. A real ``mlhub up`` (the component tests' ``EmbeddedHub``) serves the small model of
``bench/serving.py`` (``LogisticRegression`` on ``make_classification(50_000, 20)``, 2 workers)
as production, and a second fit of it (``C=0.5``) as the version shadowed. In each trial, in a
rotating order, four modes, each set through the publisher's API as users set it:

- ``off``: no shadow and no inference log (what a model has by default);
- ``log``: no shadow, the inference log of every request (what a shadow of every request asks
  of production's processes: the two are told apart);
- ``all``: ``mlhub models shadow lr --version staging --percent 100``;
- ``10%``: the same at ``--percent 10``.

``wrk`` posts one-row JSON bodies with an API key to ``/models/<user>/lr/v1/predict`` through the
hub's proxy (so every number includes the proxy), at each concurrency for ``--duration``
seconds after a warm-up; the median of ``--trials`` is reported, with each shadow mode's ratio
and p99 difference to ``off``, and what the shadow did meanwhile: rows compared, requests
dropped because its queue was full (``Shadower.queue_size``; the shadow runs on the same two
cores as production, the proxy and wrk, so a saturated machine drops rather than slows;
requests that wait go to the shadow in batches, ``Shadower.batch_requests``).

    .venv/bin/python bench/shadow.py                  # ~4 min
    .venv/bin/python bench/shadow.py --duration 20 --trials 5 --concurrency 1 8
"""

import argparse
import contextlib
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import serving as bench  # noqa: E402 (bench/serving.py: wrk, the model, the report cells)
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from support.embedded_hub import EmbeddedHub  # noqa: E402

from mlhub.bundle import save_bundle  # noqa: E402
from mlhub.publisher.client import PublisherClient  # noqa: E402

# mode -> (the shadow's share in percent, the inference log's share)
MODES = {"off": (None, None), "log": (None, 1.0), "all": (100, None), "10%": (10, None)}
USER = "bencher"
HUB_CONFIG = """
c.PublisherApp.default_workers = 2
c.LocalDeployer.drain_seconds = 1
"""


def candidate(work):
    """The version shadowed: the same model fitted with ``C=0.5``."""
    bundle = work / "lr-candidate" / "bundle"
    if not (bundle / "mlhub.yaml").is_file():
        X, y = make_classification(50_000, n_features=20, random_state=0)
        save_bundle(LogisticRegression(C=0.5).fit(X, y), bundle, name="lr", example=X[:5])
    return bundle


def set_mode(client, mode):
    """Make the shadow and the inference log what ``mode`` says (the publisher restarts
    production when its sample changes; this waits until it is done)."""
    model = client.get("lr")
    percent, log = MODES[mode]
    if model["shadow"] and model["shadow"]["percent"] != percent:
        client.stop_shadow("lr")
        wait_until_stable(client)
    if model["inference_log"] != log:
        client.configure("lr", inference_log=log or False)
    if percent is not None and not client.get("lr")["shadow"]:
        client.start_shadow("lr", "staging", percent)


def wait_until_stable(client, timeout=120):
    """Until no operation of ``lr`` is under way (its last event ends one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = client.events("lr")
        if events and events[-1]["step"] in ("done", "alias_deleted", "failed"):
            return
        time.sleep(0.5)


def shadowed(client, since=None):
    """``(rows compared since since, requests dropped since the shadow started)``."""
    if not client.get("lr")["shadow"]:
        return 0, 0
    summary = client.shadow("lr", since=since)["summary"]
    return summary["rows"], summary["dropped"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up (3)")
    parser.add_argument("--trials", type=int, default=3, help="trials, median reported (3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir(), "mlhub-bench"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    wrk = bench.ensure_wrk()
    _, rows = bench.train(args.work)
    staged = candidate(args.work)
    trials = {mode: {c: [] for c in args.concurrency} for mode in MODES}
    with contextlib.ExitStack() as stack:
        hub_dir = Path(tempfile.mkdtemp(prefix="mlhub-bench-shadow-"))
        hub = EmbeddedHub(hub_dir, config=HUB_CONFIG)
        stack.callback(hub.kill)
        stack.callback(hub.stop)
        hub.start()
        token = hub.token(USER, hub.add_user(USER))
        client = PublisherClient(url=hub.url, token=token, poll_interval=0.2)
        client.publish(args.work / "lr" / "bundle", "lr")
        client.publish(staged, "lr", alias="staging")
        key = client.create_key("lr", "bench")["key"]
        server = SimpleNamespace(
            headers={"Authorization": f"token {key}"},
            body=lambda row: {"instances": [row]},
            path=f"/models/{USER}/lr/v1/predict",
        )
        script = bench.lua_script(server, rows, args.work / "wrk-shadow.lua")
        url = hub.url.rstrip("/") + server.path
        order = list(MODES)
        for trial in range(args.trials):
            for mode in order[trial % len(order) :] + order[: trial % len(order)]:
                print(f"trial {trial + 1}/{args.trials}: shadow {mode} ...", flush=True)
                set_mode(client, mode)
                bench.run_wrk(wrk, script, url, max(args.concurrency), args.warmup)
                for c in args.concurrency:
                    time.sleep(3)  # the last run's requests are sent to the shadow by now
                    _, dropped = shadowed(client)
                    started = datetime.datetime.now(datetime.UTC).isoformat()
                    point = bench.run_wrk(wrk, script, url, c, args.duration)
                    time.sleep(5)  # its requests reach the shadow (every 2 s), then are answered
                    point["compared"], point["dropped"] = shadowed(client, started)
                    point["dropped"] -= dropped
                    trials[mode][c].append(point)
    report(trials, args, argv)


def report(trials, args, argv):
    results = {
        mode: {c: bench.median_point(points) for c, points in by_c.items()}
        for mode, by_c in trials.items()
    }
    print()
    print(
        f"LogisticRegression through the hub's proxy, one-row JSON, 2 workers, "
        f"{args.duration} s x {args.trials} trials"
    )
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print(
        "| c | shadow | req/s (p50 / p95 / p99 ms) | req/s vs off | p99 - off | compared |", end=""
    )
    print(" dropped |")
    print("|---|---|---|---|---|---|---|")
    for c in args.concurrency:
        base = results["off"][c]
        for mode in MODES:
            p = results[mode][c]
            print(
                f"| {c} | {mode} | {bench.cell(p)} | {p['rps'] / base['rps']:.3f} | "
                f"{p['p99_ms'] - base['p99_ms']:+.3f} ms | {p['compared']:.0f} | "
                f"{p['dropped']:.0f} |"
            )
    print()
    at_one = min(args.concurrency)
    cost = 1 - results["all"][at_one]["rps"] / results["off"][at_one]["rps"]
    p99 = results["all"][at_one]["p99_ms"] - results["off"][at_one]["p99_ms"]
    print(
        f"target (issue 15): a shadow of every request costs < 5% throughput and < 1 ms p99 at "
        f"c={at_one}: {cost * 100:.1f}% and {p99:+.3f} ms -> "
        f"{'met' if cost < 0.05 and p99 < 1 else 'MISSED'}"
    )
    print(f"reproduce: .venv/bin/python bench/shadow.py {' '.join(argv or sys.argv[1:])}")


if __name__ == "__main__":
    main()
