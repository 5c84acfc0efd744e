"""What the inference log costs a model's callers: throughput and latency with it off and on.

The issue's target: logging every request costs under 5% of a small model's throughput and
under 1 ms of p99 latency at one connection. This script serves the small model of
``bench/serving.py`` (``LogisticRegression`` on ``make_classification(50_000, 20)``) with
``python -m mlhub.serving --workers 2`` (auth, validation and metrics on), three ways, one
after the other, in each trial (the order rotates between trials):

- ``off``: no inference log (what every model had before);
- ``all``: ``MLHUB_INFERENCE_LOG=1``: every request's input, output, latency and status kept;
- ``10%``: ``MLHUB_INFERENCE_LOG=0.1``.

The log's batches go to a receiver in this process that does what the publisher does with
them before storing (reads the gzipped JSON and counts the rows), so the numbers are the serving
side's cost; the receiver's count is checked against the requests answered (nothing lost at
``all``; about a tenth at ``10%``). ``wrk`` posts one-row JSON bodies as in ``bench/serving.py``
at each concurrency for ``--duration`` seconds after a warm-up; the median of ``--trials`` is
reported, with the ratio and the p99 difference of each logging mode to ``off``.

    .venv/bin/python bench/inference_log.py                  # ~4 min
    .venv/bin/python bench/inference_log.py --duration 20 --trials 5 --concurrency 1 8
"""

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving as bench  # noqa: E402 (bench/serving.py: the servers, wrk and the model)

MODES = {"off": None, "all": "1", "10%": "0.1"}
TOKEN = "mlhl_bench"


class Receiver:
    """Takes the log's batches as the publisher's ``POST .../inference-log`` does."""

    def __init__(self):
        self.rows = 0
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                batch = json.loads(gzip.decompress(body))
                with receiver.lock:
                    for request in batch["requests"]:
                        receiver.requests += 1
                        receiver.rows += len(request["inputs"] or [None])
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/inference-log"

    def reset(self):
        with self.lock:
            self.rows = self.requests = 0


def start_mode(mode, model_dir, work, receiver):
    port = bench.free_port()
    access = work / "access.json"
    access.write_text(
        json.dumps({"key_hashes": [bench.hashlib.sha256(bench.KEY.encode()).hexdigest()]})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLHUB_")}
    env.update(MLHUB_AUTH="on", MLHUB_ACCESS_FILE=str(access), MLHUB_MODEL_VERSION="sha256:bench")
    if MODES[mode]:
        env.update(
            MLHUB_INFERENCE_LOG=MODES[mode],
            MLHUB_INFERENCE_LOG_URL=receiver.url,
            MLHUB_INFERENCE_LOG_TOKEN=TOKEN,
        )
    argv = [sys.executable, "-m", "mlhub.serving", "--bundle", str(model_dir / "bundle")]
    argv += ["--port", str(port), "--workers", "2"]
    return bench.start(
        f"mlhub log {mode}",
        argv,
        env=env,
        log=work / f"log-{mode.strip('%')}.log",
        **bench.mlhub_contract(port),
    )


def measure(mode, model_dir, work, receiver, rows, wrk, concurrency, args):
    server = start_mode(mode, model_dir, work, receiver)
    try:
        script = bench.lua_script(server, rows, work / f"wrk-{mode.strip('%')}.lua")
        url = server.url
        bench.run_wrk(wrk, script, url, max(concurrency), args.warmup)
        points = {}
        for c in concurrency:
            time.sleep(3)  # the warm-up's (or the last run's) batches are sent by now
            receiver.reset()
            point = bench.run_wrk(wrk, script, url, c, args.duration)
            time.sleep(3)  # the runtime sends every 2 s
            point["logged"] = receiver.requests
            points[c] = point
        return points
    finally:
        bench.stop(server.proc)


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
    models, rows = bench.train(args.work)
    model_dir = args.work / "lr"
    receiver = Receiver()
    trials = {mode: {c: [] for c in args.concurrency} for mode in MODES}
    order = list(MODES)
    for trial in range(args.trials):
        for mode in order[trial % len(order) :] + order[: trial % len(order)]:
            print(f"trial {trial + 1}/{args.trials}: log {mode} ...", flush=True)
            for c, point in measure(
                mode, model_dir, args.work, receiver, rows, wrk, args.concurrency, args
            ).items():
                trials[mode][c].append(point)
    results = {
        mode: {c: bench.median_point(points) for c, points in by_c.items()}
        for mode, by_c in trials.items()
    }
    print()
    print(f"LogisticRegression, one-row JSON, 2 workers, {args.duration} s x {args.trials} trials")
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| c | log | req/s (p50 / p95 / p99 ms) | req/s vs off | p99 - off | logged / answered |")
    print("|---|---|---|---|---|---|")
    for c in args.concurrency:
        base = results["off"][c]
        for mode in MODES:
            p = results[mode][c]
            ratio = p["rps"] / base["rps"]
            logged = "-" if not MODES[mode] else f"{p['logged']:.0f} / {p['requests']:.0f}"
            print(
                f"| {c} | {mode} | {bench.cell(p)} | {ratio:.3f} | "
                f"{p['p99_ms'] - base['p99_ms']:+.3f} ms | {logged} |"
            )
    print()
    at_one = min(args.concurrency)
    cost = 1 - results["all"][at_one]["rps"] / results["off"][at_one]["rps"]
    p99 = results["all"][at_one]["p99_ms"] - results["off"][at_one]["p99_ms"]
    print(
        f"target (issue 15): logging every request costs < 5% throughput and < 1 ms p99 at "
        f"c={at_one}: {cost * 100:.1f}% and {p99:+.3f} ms -> "
        f"{'met' if cost < 0.05 and p99 < 1 else 'MISSED'}"
    )
    print(f"reproduce: .venv/bin/python bench/inference_log.py {' '.join(argv or sys.argv[1:])}")


if __name__ == "__main__":
    main()
