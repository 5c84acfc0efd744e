"""Batch scoring speed: ``mlhub batch`` next to its limit and next to the naive way.

performance-anchors.md: "the limit is the same source -> in-process predict -> sink pipeline in
one process with no HTTP; mlhub's batch path should reach at least half of that on 1,000,000
rows". This script scores ``--rows`` rows (default 1,000,000; 20 features from
``make_classification(rows, n_features=20, random_state=1)``) with ``LogisticRegression()``
trained on ``make_classification(50_000, n_features=20, random_state=0)``, from a Parquet file
and from a SQLite table, into a folder of Parquet parts, three ways:

- ``in-process (limit)``: ``mlhub.batch.score`` with the model loaded in this process
  (``InProcessModel``): the very same reader, chunking, state file and sink, no HTTP;
- ``mlhub batch``: ``mlhub.batch.score`` against the model served by
  ``python -m mlhub.serving --workers 2`` with authentication on (an API key), chunks sent as
  Arrow IPC streams; on Parquet also ``mlhub batch, JSON bodies``, the columnar JSON a server
  without Arrow support gets;
- ``one request per row``: a loop posting ``{"instances": [row]}`` per row over one keep-alive
  session, as a first script would; measured on the first ``--sample`` rows (default 5,000) and
  extrapolated to ``--rows`` (said so in the table).

Client and server share this machine's cores, as they would on one host. Each figure is the
median of ``--trials`` runs (wall time of the whole ``score`` call: opening, metadata, count,
reading, scoring, writing, fsyncs). The HTTP results are checked equal to the in-process ones.

    .venv/bin/python bench/batch.py                      # about 3 minutes here
    .venv/bin/python bench/batch.py --rows 200000 --trials 1 --json out.json

The model server it starts is stopped when it ends, also on Ctrl-C or SIGTERM.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import requests
import sklearn
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from mlhub.batch import BatchSettings, Scorer, score
from mlhub.batch.endpoint import ModelEndpoint
from mlhub.bundle import bundle_digest, load_manifest, load_model, save_bundle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.batchtest import Serving  # noqa: E402

FEATURES = [f"f{i}" for i in range(20)]
KEY = "mlhk_bench-batch"


class InProcessModel(Scorer):
    """The bundle's model called in this process: the limit with no HTTP in between."""

    def __init__(self, bundle_dir):
        manifest = load_manifest(bundle_dir)
        self.model = load_model(bundle_dir, manifest)
        self.name = "in-process"
        self.version = bundle_digest(bundle_dir)
        self.signature = manifest["signature"]

    def predict(self, features):
        return self.model.predict(np.column_stack([c.to_numpy() for c in features.columns]))


def model_server(bundle, work, workers):
    """``python -m mlhub.serving`` with authentication on, reachable with the API key ``KEY``,
    started by the component tests' launcher (``batchtest.Serving``)."""
    access = work / "access.json"
    access.write_text(json.dumps({"key_hashes": [hashlib.sha256(KEY.encode()).hexdigest()]}))
    env = {"MLHUB_AUTH": "on", "MLHUB_ACCESS_FILE": str(access)}
    return Serving(bundle, work, env=env, workers=workers)


def make_data(work, rows):
    X, y = make_classification(50_000, n_features=20, random_state=0)
    model = LogisticRegression().fit(X, y)
    save_bundle(model, work / "bundle", name="lr", example=X[:5])
    data, _ = make_classification(rows, n_features=20, random_state=1)
    table = pa.table({"id": np.arange(rows), **{f: data[:, i] for i, f in enumerate(FEATURES)}})
    pq.write_table(table, work / "wafers.parquet", row_group_size=100_000)
    with sqlite3.connect(work / "fab.db") as db:
        columns = ", ".join(f"{f} REAL" for f in FEATURES)
        db.execute(f"CREATE TABLE wafers (id INTEGER PRIMARY KEY, {columns})")
        marks = ", ".join("?" * 21)
        db.executemany(
            f"INSERT INTO wafers VALUES ({marks})",
            zip(*(c.to_pylist() for c in table.columns), strict=True),
        )
    db.close()
    return table


def timed_score(scorer, source, dest, work, settings, **selection):
    """Seconds for one whole ``score`` call (a fresh run into an empty folder)."""
    started = time.perf_counter()
    report = score(
        scorer,
        source,
        str(dest),
        key="id",
        state=work / "bench.state",
        restart=True,
        progress=False,
        **selection,
        **settings,
    )
    seconds = time.perf_counter() - started
    assert report.scored == report.rows, report.summary()
    return seconds, report.rows


def naive(url, table, sample):
    """Seconds for one request per row over the first ``sample`` rows (sequential, keep-alive),
    results written to a Parquet file as the pipeline would."""
    rows = table.slice(0, sample)
    ids, values = rows["id"].to_pylist(), rows.select(FEATURES).to_pylist()
    session = requests.Session()
    session.headers["Authorization"] = f"token {KEY}"
    started = time.perf_counter()
    predictions = []
    for record in values:
        resp = session.post(url + "v1/predict", json={"instances": [list(record.values())]})
        resp.raise_for_status()
        predictions.append(resp.json()["predictions"][0])
    out = pa.table({"id": ids, "prediction": predictions})
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(out, Path(tmp) / "naive.parquet")
    return time.perf_counter() - started, out


def median_run(trials, run, *args, **kwargs):
    """The median seconds of ``trials`` calls of ``run`` and the first call's other result."""
    results = [run(*args, **kwargs) for _ in range(trials)]
    return statistics.median(seconds for seconds, _ in results), results[0][1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=5_000, help="rows for one-request-per-row")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="model server worker processes")
    parser.add_argument("--chunk-size", type=int, default=BatchSettings.chunk_size)
    parser.add_argument("--concurrency", type=int, default=BatchSettings.concurrency)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    settings = {"chunk_size": args.chunk_size, "concurrency": args.concurrency}

    with tempfile.TemporaryDirectory(prefix="mlhub-bench-batch-") as tmp:
        results = measure(Path(tmp), args, settings)
    report(results, args)


def measure(work, args, settings):
    print(f"preparing {args.rows:,} rows in {work} ...", file=sys.stderr)
    table = make_data(work, args.rows)
    local = InProcessModel(work / "bundle")
    server = model_server(work / "bundle", work, args.workers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    try:
        remote = ModelEndpoint(server.url, token=KEY, settings=BatchSettings(**settings))
        json_only = ModelEndpoint(server.url, token=KEY, settings=BatchSettings(**settings))
        json_only.arrow = False
        sources = {
            "parquet": (str(work / "wafers.parquet"), {}),
            "sqlite": (f"sqlite:///{work / 'fab.db'}", {"table": "wafers"}),
        }
        for source_name, (source, selection) in sources.items():
            methods = [("in-process (limit)", local), ("mlhub batch", remote)]
            if source_name == "parquet":
                methods.append(("mlhub batch, JSON bodies", json_only))
            for method, scorer in methods:
                print(f"{source_name}: {method} ...", file=sys.stderr)
                dest = work / f"out-{source_name}-{len(results)}"
                seconds, rows = median_run(
                    args.trials, timed_score, scorer, source, dest, work, settings, **selection
                )
                results.append(
                    {
                        "source": source_name,
                        "method": method,
                        "rows": rows,
                        "seconds": seconds,
                        "extrapolated": False,
                        "dest": dest,
                    }
                )
            print(f"{source_name}: one request per row ...", file=sys.stderr)
            seconds, naive_out = median_run(args.trials, naive, server.url, table, args.sample)
            results.append(
                {
                    "source": source_name,
                    "method": "one request per row",
                    "rows": args.rows,
                    "seconds": seconds * args.rows / args.sample,
                    "extrapolated": True,
                    "dest": None,
                }
            )
        check(results, naive_out)
    finally:
        server.stop()
    for r in results:
        r.pop("dest")
    return results


def check(results, naive_out):
    """Every HTTP result equals the in-process one, row by row."""
    limit = {}
    for r in results:
        if r["dest"] is None:
            continue
        out = pads.dataset(r["dest"], format="parquet").to_table().sort_by("id")
        predictions = out["prediction"].to_numpy()
        reference = limit.setdefault(r["source"], predictions)
        if not np.array_equal(reference, predictions):
            raise SystemExit(f"{r['source']} / {r['method']}: predictions differ from in-process")
    first = limit["parquet"][: naive_out.num_rows]
    if not np.array_equal(first, naive_out["prediction"].to_numpy()):
        raise SystemExit("one request per row: predictions differ from in-process")


def report(results, args):
    limits = {r["source"]: r["rows"] / r["seconds"] for r in results if "limit" in r["method"]}
    print()
    print(f"# mlhub batch, {args.rows:,} rows, LR on 20 features; median of {args.trials}")
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, Python "
        f"{platform.python_version()}, scikit-learn {sklearn.__version__}, pyarrow "
        f"{pa.__version__}; server: {args.workers} uWSGI workers, auth on; chunk "
        f"{args.chunk_size:,} rows, concurrency {args.concurrency}"
    )
    print()
    print("| source | method | seconds | rows/s | vs in-process |")
    print("|---|---|---|---|---|")
    for r in results:
        rate = r["rows"] / r["seconds"]
        note = f" ({args.sample:,}-row sample, extrapolated)" if r["extrapolated"] else ""
        print(
            f"| {r['source']} | {r['method']}{note} | {r['seconds']:,.2f} | {rate:,.0f} | "
            f"{rate / limits[r['source']]:.2f} |"
        )
    print()
    for source, limit in limits.items():
        batch = next(r for r in results if r["source"] == source and r["method"] == "mlhub batch")
        naive_run = next(r for r in results if r["source"] == source and r["extrapolated"])
        ratio = batch["rows"] / batch["seconds"] / limit
        speedup = naive_run["seconds"] / batch["seconds"]
        verdict = "met" if ratio >= 0.5 else "MISSED"
        print(
            f"{source}: mlhub batch reaches {ratio:.0%} of the in-process rate (target >= 50%: "
            f"{verdict}); {speedup:,.0f}x one request per row"
        )
    print(f"\ncommand: .venv/bin/python bench/batch.py {' '.join(sys.argv[1:])}".rstrip())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
