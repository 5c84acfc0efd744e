"""Serving speed, side by side: mlhub's uWSGI runtime next to what users would run instead.

docs/design.md wants every number from a benchmark under ``bench/``, measured against the tools
users would pick. This script serves the same two scikit-learn models, trained here on
``make_classification(50_000, n_features=20, random_state=0)``:

- LR: ``LogisticRegression()``
- RF: ``RandomForestClassifier(n_estimators=200, max_depth=12, n_jobs=1)``

with each of these servers, one at a time, every one with 2 worker processes on 127.0.0.1:

- ``mlhub``: ``python -m mlhub.serving --workers 2`` with authentication (an API key),
  validation and metrics on, micro-batching off; ``mlhub+batch``: the same with
  ``MLHUB_BATCHING=on``;
- ``mlflow``: ``mlflow models serve -w 2 --env-manager local`` (as shipped);
- ``bentoml``: a ``@bentoml.service(workers=2)`` with one ``@bentoml.api`` taking an array;
- ``flask``: a bare Flask app (no auth, no validation, no metrics) under
  ``uwsgi --master --processes 2 --http-keepalive --disable-logging``;
- ``mlhub-image``: the standard ``serving-python`` image (nginx -> uWSGI -> mlhub.serving,
  ``MLHUB_WORKERS=2``, auth on) under ``docker run`` with the bundle mounted read-only, when the
  Docker engine answers (``scripts/docker-engine up``); it is built with ``mlhub images build
  serving-python`` if its inputs changed. What it adds over ``mlhub``: nginx and Docker's port
  forwarding (docker-proxy) on every request.

``wrk`` (Debian's; installed with apt-get when missing and running as root) posts one-row JSON
bodies (64 different rows, in turn) through a Lua script, at each concurrency for
``--duration`` seconds, after a warm-up; ``--trials`` rounds over all servers, each server
started afresh in each round (the median is reported). It
prints requests/s and p50/p95/p99 latency, the ratios of mlhub to each peer, and the
performance targets of shared/notes/performance-anchors.md met or missed.

MLflow and BentoML are installed into their own venvs outside the work tree, cached by
version (``~/.cache/mlhub-bench/venv-<tool>-<version>``), with this venv's scikit-learn
version so the same pickles load; never into the project's venv. A peer that cannot be
installed or started is reported and skipped; the others still run.

    .venv/bin/python bench/serving.py                       # ~15 min with installs cached
    .venv/bin/python bench/serving.py --duration 20 --trials 3 --json out.json

Every process it starts is stopped when it ends, also on Ctrl-C or SIGTERM.
"""

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import pickle
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import requests
import sklearn
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from mlhub.bundle import save_bundle

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "mlhub-bench"
KEY = "mlhk_bench-serving-key"
SERVERS = ("mlhub", "mlhub+batch", "mlhub-image", "mlflow", "bentoml", "flask")
PEERS = ("mlflow", "bentoml", "flask")
ROWS_SENT = 64  # distinct one-row bodies each wrk connection cycles through
START_TIMEOUT = 180

FLASK_APP = '''\
"""A bare Flask app: what a user writes in five minutes. No auth, validation or metrics."""
import os, pickle
import numpy as np
from flask import Flask, jsonify, request

with open(os.environ["MODEL_PATH"], "rb") as fh:
    model = pickle.load(fh)
app = Flask(__name__)


@app.get("/ping")
def ping():
    return "ok"


@app.post("/predict")
def predict():
    rows = np.asarray(request.get_json()["instances"], dtype=float)
    return jsonify(predictions=model.predict(rows).tolist())
'''

BENTO_SERVICE = """\
import os, pickle
import bentoml
import numpy as np


@bentoml.service(workers=2)
class Classifier:
    def __init__(self):
        with open(os.environ["MODEL_PATH"], "rb") as fh:
            self.model = pickle.load(fh)

    @bentoml.api
    def predict(self, instances: np.ndarray) -> np.ndarray:
        return self.model.predict(instances)
"""

MLFLOW_SAVE = """\
import pickle, sys
import mlflow.sklearn
import numpy as np
from mlflow.models import infer_signature

model_path, example_path, dest = sys.argv[1:4]
with open(model_path, "rb") as fh:
    model = pickle.load(fh)
example = np.load(example_path)
mlflow.sklearn.save_model(
    model, dest, signature=infer_signature(example, model.predict(example)),
    input_example=example[:2],
    serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
)
"""

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}
local bodies = {{
{bodies}
}}
local prepared = {{}}
local n = 0

init = function(args)
  for i, body in ipairs(bodies) do
    prepared[i] = wrk.format(nil, "{path}", nil, body)
  end
end

request = function()
  n = n % #prepared + 1
  return prepared[n]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT %d %d %d %d %.1f %.1f %.1f %.1f\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""


class Skip(Exception):
    """A server that cannot be installed or started: reported, and the others go on."""


# ---------------------------------------------------------------- processes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    """SIGTERM the process group ``proc`` leads, then SIGKILL what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers a master left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclass
class Running:
    """A started server: where to post, what to send, how to stop it."""

    name: str
    proc: subprocess.Popen
    url: str
    path: str
    body: object  # row (list) -> JSON-able body
    headers: dict = field(default_factory=dict)
    log: Path | None = None
    container: str | None = None  # a Docker container to remove when it stops


def start(name, argv, *, env, log, ready_url, cwd=None, **running):
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skip(f"{name} exited with {proc.returncode}: {tail(log)}")
        try:
            if requests.get(ready_url, timeout=2).status_code == 200:
                return Running(name, proc, log=log, **running)
        except requests.RequestException:
            pass
        time.sleep(0.25)
    stop(proc)
    raise Skip(f"{name} was not ready after {START_TIMEOUT} s: {tail(log)}")


def tail(path, chars=600):
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- installs


def ensure_wrk():
    """The wrk binary; installed from Debian when missing and this runs as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: run 'apt-get install wrk' as root, then again")
    print("installing wrk (apt-get install wrk) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env).returncode:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, check=True)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def peer_venv(tool, version, timeout):
    """A venv with ``tool==version`` and this venv's scikit-learn, created once and cached.

    The venv is only used when its ``.ready`` stamp names exactly what was asked; otherwise it
    is built anew. Raises ``Skip`` when pip fails or takes longer than ``timeout``.
    """
    venv = CACHE / f"venv-{tool}-{version}"
    wanted = [f"{tool}=={version}", f"scikit-learn=={sklearn.__version__}"]
    stamp = venv / ".ready"
    if stamp.is_file() and stamp.read_text().split() == wanted:
        return venv
    print(f"installing {' '.join(wanted)} into {venv} (once) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / f"venv-{tool}-{version}.log"
    base = getattr(sys, "_base_executable", sys.executable)
    try:
        with open(log, "wb") as out:
            subprocess.run([base, "-m", "venv", str(venv)], check=True, stdout=out, stderr=out)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", *wanted],
                check=True,
                stdout=out,
                stderr=out,
                timeout=timeout,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise Skip(f"{tool} {version} could not be installed ({exc}); see {log}") from None
    stamp.write_text(" ".join(wanted))
    return venv


# ---------------------------------------------------------------- models


def train(work):
    """The two models and the rows to send, trained once per work directory."""
    X, y = make_classification(50_000, n_features=20, random_state=0)
    models = {}
    for name, make in (
        ("lr", lambda: LogisticRegression()),
        ("rf", lambda: RandomForestClassifier(n_estimators=200, max_depth=12, n_jobs=2)),
    ):
        path = work / name / "model.pkl"
        if path.is_file():
            with open(path, "rb") as fh:
                model = pickle.load(fh)
        else:
            print(f"training {name} ...", flush=True)
            model = make().fit(X, y)
            if name == "rf":
                model.n_jobs = 1  # served single-threaded, as the anchors measure
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                pickle.dump(model, fh)
        models[name] = model
        bundle = work / name / "bundle"
        if not (bundle / "mlhub.yaml").is_file():
            save_bundle(model, bundle, name=name, example=X[:5])
        np.save(work / name / "example.npy", X[:5])
    return models, X[:ROWS_SENT]


# ---------------------------------------------------------------- servers


def start_mlhub(name, model_dir, work, batching):
    port = free_port()
    access = work / "access.json"
    access.write_text(json.dumps({"key_hashes": [hashlib.sha256(KEY.encode()).hexdigest()]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLHUB_")}
    env.update(
        MLHUB_AUTH="on",
        MLHUB_ACCESS_FILE=str(access),
        MLHUB_BATCHING="on" if batching else "off",
    )
    argv = [sys.executable, "-m", "mlhub.serving", "--bundle", str(model_dir / "bundle")]
    argv += ["--port", str(port), "--workers", "2"]
    return start(
        name,
        argv,
        env=env,
        log=work / f"{name}-{model_dir.name}.log",
        **mlhub_contract(port),
    )


def mlhub_contract(port):
    """How the load generator reaches an mlhub server on ``port`` (the embedded runtime and the
    image answer the same serving contract): readiness, predict route, body and API key."""
    return {
        "ready_url": f"http://127.0.0.1:{port}/readyz",
        "url": f"http://127.0.0.1:{port}",
        "path": "/v1/predict",
        "body": lambda row: {"instances": [row]},
        "headers": {"Authorization": f"token {KEY}"},
    }


def serving_image():
    """The standard serving-python image, built by the images pipeline if its inputs changed."""
    if subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
        raise Skip("no Docker engine answers (start one with scripts/docker-engine up)")
    mlhub_cli = Path(sys.executable).with_name("mlhub")
    build = subprocess.run(
        [str(mlhub_cli), "images", "build", "serving-python"], capture_output=True, text=True
    )
    if build.returncode != 0:
        raise Skip(f"mlhub images build serving-python failed: {build.stderr[-600:]}")
    return "mlhub/serving-python:0.1.0"


def start_image(model_dir, work, image):
    """``docker run`` of the serving image in the foreground (it forwards SIGTERM to the
    container); the container is also removed by name when the server is stopped."""
    port = free_port()
    access = work / "access.json"
    access.write_text(json.dumps({"key_hashes": [hashlib.sha256(KEY.encode()).hexdigest()]}))
    name = f"mlhub-bench-{port}"
    argv = ["docker", "run", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:8080"]
    argv += ["-v", f"{model_dir / 'bundle'}:/var/lib/mlhub/bundle:ro"]
    argv += ["-v", f"{access}:/etc/mlhub/access.json:ro"]
    argv += ["-e", "MLHUB_ACCESS_FILE=/etc/mlhub/access.json", "-e", "MLHUB_WORKERS=2", image]
    try:
        return start(
            "mlhub-image",
            argv,
            env=os.environ.copy(),
            log=work / f"mlhub-image-{model_dir.name}.log",
            container=name,
            **mlhub_contract(port),
        )
    except Skip:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        raise


def start_flask(model_dir, work):
    port = free_port()
    app = work / "flask_app.py"
    app.write_text(FLASK_APP)
    uwsgi = Path(sys.executable).parent / "uwsgi"
    argv = [str(uwsgi), "--http", f"127.0.0.1:{port}", "--http-keepalive", "--master"]
    argv += ["--processes", "2", "--wsgi-file", str(app), "--callable", "app"]
    argv += ["--need-app", "--disable-logging", "--die-on-term"]
    return start(
        "flask",
        argv,
        env={**os.environ, "MODEL_PATH": str(model_dir / "model.pkl")},
        log=work / f"flask-{model_dir.name}.log",
        ready_url=f"http://127.0.0.1:{port}/ping",
        url=f"http://127.0.0.1:{port}",
        path="/predict",
        body=lambda row: {"instances": [row]},
    )


def start_mlflow(model_dir, work, venv):
    dest = model_dir / "mlflow-model"
    if not (dest / "MLmodel").is_file():
        script = work / "mlflow_save.py"
        script.write_text(MLFLOW_SAVE)
        argv = [str(venv / "bin" / "python"), str(script), str(model_dir / "model.pkl")]
        argv += [str(model_dir / "example.npy"), str(dest)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode:
            raise Skip(f"mlflow could not save the model: {done.stderr[-600:]}")
    port = free_port()
    argv = [str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(dest), "-w", "2"]
    argv += ["-p", str(port), "-h", "127.0.0.1", "--env-manager", "local"]
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    return start(
        "mlflow",
        argv,
        env=env,
        log=work / f"mlflow-{model_dir.name}.log",
        ready_url=f"http://127.0.0.1:{port}/ping",
        url=f"http://127.0.0.1:{port}",
        path="/invocations",
        body=lambda row: {"inputs": [row]},
    )


def start_bentoml(model_dir, work, venv):
    service = work / "bento"
    service.mkdir(exist_ok=True)
    (service / "service.py").write_text(BENTO_SERVICE)
    port = free_port()
    argv = [str(venv / "bin" / "bentoml"), "serve", "service:Classifier"]
    argv += ["--port", str(port), "--host", "127.0.0.1"]
    env = {
        **os.environ,
        "MODEL_PATH": str(model_dir / "model.pkl"),
        "BENTOML_HOME": str(work / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
    }
    return start(
        "bentoml",
        argv,
        env=env,
        cwd=service,
        log=work / f"bentoml-{model_dir.name}.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
        url=f"http://127.0.0.1:{port}",
        path="/predict",
        body=lambda row: {"instances": [row]},
    )


# ---------------------------------------------------------------- load


def lua_script(server, rows, path):
    """The wrk script for ``server``: one-row bodies, its headers, a machine-readable summary."""
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in server.headers.items())
    bodies = ",\n".join(
        "  " + json.dumps(json.dumps(server.body(row.tolist()), separators=(",", ":")))
        for row in rows
    )
    path.write_text(WRK_SCRIPT.format(headers=headers, bodies=bodies, path=server.path))
    return path


def check_answers(server, rows, model):
    """A few requests through ``requests``: each server must answer, and answer correctly."""
    for row in rows[:3]:
        answer = requests.post(
            server.url + server.path, json=server.body(row.tolist()), headers=server.headers
        )
        if answer.status_code != 200:
            raise Skip(f"{server.name} answered {answer.status_code}: {answer.text[:300]}")
        got = answer.json()
        got = got.get("predictions", got) if isinstance(got, dict) else got
        if np.ravel(got).tolist() != model.predict(row[None, :]).tolist():
            raise Skip(f"{server.name} predicted {got} for a row the model predicts otherwise")


def run_wrk(wrk, script, url, concurrency, seconds):
    threads = min(2, concurrency)
    argv = [wrk, "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s"]
    argv += ["--timeout", "10s", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            n, micros, errors, status, p50, p95, p99, mean = line.split()[1:]
            return {
                "rps": int(n) / (int(micros) / 1e6),
                "requests": int(n),
                "errors": int(errors),
                "non_2xx": int(status),
                "p50_ms": float(p50) / 1000,
                "p95_ms": float(p95) / 1000,
                "p99_ms": float(p99) / 1000,
            }
    raise Skip(f"wrk gave no result: {done.stdout[-300:]} {done.stderr[-300:]}")


def median_point(trials):
    point = {k: statistics.median(t[k] for t in trials) for k in trials[0]}
    point["trials"] = len(trials)
    return point


# ---------------------------------------------------------------- report


def ms(value):
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def cell(point):
    if not point:
        return "-"
    text = f"{point['rps']:,.0f} ({ms(point['p50_ms'])} / {ms(point['p95_ms'])} / "
    text += f"{ms(point['p99_ms'])})"
    if point["errors"] or point["non_2xx"]:
        text += f" !{point['errors'] + point['non_2xx']} errors"
    return text


def report(results, concurrency, skipped, versions, args):
    lines = []
    out = lines.append
    out("")
    out("Serving speed: requests/s (p50 / p95 / p99 ms), one-row JSON, 2 workers per server, ")
    out(f"{args.duration} s per point, median of {args.trials} trial(s), wrk on 127.0.0.1.")
    out(f"Load average at the end (1/5/15 min): {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    out(
        f"NOTE: wrk and the servers share this machine's {os.cpu_count()} cores: the load "
        "generator takes CPU from the servers."
    )
    out("")
    head = "| model | server | " + " | ".join(f"c={c}" for c in concurrency) + " |"
    out(head)
    out("|" + "---|" * (2 + len(concurrency)))
    for model, by_server in results.items():
        for server, points in by_server.items():
            cells = " | ".join(cell(points.get(c)) for c in concurrency)
            out(f"| {model.upper()} | {server} | {cells} |")
    out("")
    out("Ratios of throughput (mlhub / peer):")
    for model, by_server in results.items():
        for mine in ("mlhub", "mlhub+batch", "mlhub-image"):
            for peer in PEERS:
                if mine not in by_server or peer not in by_server:
                    continue
                ratios = []
                for c in concurrency:
                    a, b = by_server[mine].get(c), by_server[peer].get(c)
                    ratios.append(f"c={c} {a['rps'] / b['rps']:.2f}x" if a and b else f"c={c} -")
                out(f"  {model.upper()} {mine:11} / {peer:7}: " + ", ".join(ratios))
    out("")
    out("Targets (shared/notes/performance-anchors.md):")
    for text, ok in targets(results):
        out(f"  [{'met' if ok else 'MISSED' if ok is False else 'n/a'}] {text}")
    for name, reason in skipped:
        out(f"SKIPPED {name}: {reason}")
    out("")
    out("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    out(f"Command: {shlex.join([sys.executable, *sys.argv])}")
    print("\n".join(lines), flush=True)


def targets(results):
    def get(model, server, c):
        return results.get(model, {}).get(server, {}).get(c)

    def check(text, value, limit, above=True):
        if value is None:
            return text + ": not measured", None
        ok = value >= limit if above else value < limit
        return f"{text}: {value:.2f} (target {'>=' if above else '<'} {limit})", ok

    def ratio(a, b):
        return a["rps"] / b["rps"] if a and b else None

    lr1 = get("lr", "mlhub", 1)
    rf_off, rf_on = get("rf", "mlhub", 1), get("rf", "mlhub+batch", 1)
    return [
        check(
            "LR c=64 mlhub / bare flask+uwsgi",
            ratio(get("lr", "mlhub", 64), get("lr", "flask", 64)),
            0.8,
        ),
        check("LR c=1 mlhub p99 ms", lr1 and lr1["p99_ms"], 5.0, above=False),
        check("LR c=64 mlhub / mlflow", ratio(get("lr", "mlhub", 64), get("lr", "mlflow", 64)), 2),
        check(
            "RF c=64 mlhub+batch / bare flask+uwsgi",
            ratio(get("rf", "mlhub+batch", 64), get("rf", "flask", 64)),
            5.0,
        ),
        check(
            "RF c=1 p95 mlhub+batch / mlhub unbatched",
            rf_on and rf_off and rf_on["p95_ms"] / rf_off["p95_ms"],
            2.0,
            above=False,
        ),
    ]


def versions_of(venvs):
    found = {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "flask": metadata.version("flask"),
        "uwsgi": subprocess.run(
            [str(Path(sys.executable).parent / "uwsgi"), "--version"],
            capture_output=True,
            text=True,
        ).stdout.strip(),
    }
    for tool, venv in venvs.items():
        if venv:
            found[tool] = venv.name.rsplit("-", 1)[1]
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    found["wrk"] = (wrk.stdout or wrk.stderr).split()[1] if (wrk.stdout or wrk.stderr) else "?"
    return found


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Serve the same scikit-learn models with mlhub, mlflow, BentoML and bare "
        "Flask/uWSGI, load each with wrk, and print a table with ratios.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per point")
    parser.add_argument("--trials", type=int, default=2, help="trials per point (median)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per server")
    parser.add_argument("--concurrency", default="1,8,64", help="connections, comma-separated")
    parser.add_argument("--models", default="lr,rf", help="lr, rf or both")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"any of {', '.join(SERVERS)}")
    parser.add_argument("--mlflow-version", default="3.17.2")
    parser.add_argument("--bentoml-version", default="1.4.40")
    parser.add_argument(
        "--install-timeout", type=int, default=900, help="seconds for one peer's pip install"
    )
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.models = [m for m in args.models.split(",") if m]
    args.servers = [s for s in args.servers.split(",") if s]
    for server in args.servers:
        if server not in SERVERS:
            parser.error(f"unknown server {server!r}: use {', '.join(SERVERS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    wrk = ensure_wrk()
    work = args.work or Path(tempfile.mkdtemp(prefix="mlhub-bench-serving-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work directory: {work}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    skipped = []
    venvs = {}
    for tool, version in (("mlflow", args.mlflow_version), ("bentoml", args.bentoml_version)):
        if tool in args.servers:
            try:
                venvs[tool] = peer_venv(tool, version, args.install_timeout)
            except Skip as exc:
                skipped.append((tool, str(exc)))
                print(f"SKIPPING {tool}: {exc}", flush=True)
    models, rows = train(work)
    image = None
    if "mlhub-image" in args.servers:
        try:
            image = serving_image()
        except Skip as exc:
            skipped.append(("mlhub-image", str(exc)))
            print(f"SKIPPING mlhub-image: {exc}", flush=True)

    starters = {
        "mlhub": lambda d: start_mlhub("mlhub", d, work, batching=False),
        "mlhub+batch": lambda d: start_mlhub("mlhub+batch", d, work, batching=True),
        "mlflow": lambda d: start_mlflow(d, work, venvs["mlflow"]),
        "bentoml": lambda d: start_bentoml(d, work, venvs["bentoml"]),
        "flask": lambda d: start_flask(d, work),
        "mlhub-image": lambda d: start_image(d, work, image),
    }
    started = datetime.datetime.now()
    # Trials go round every server in turn (a fresh start each), so a noisy spell on the
    # machine lands on all servers alike instead of on whichever ran during it.
    measured = {
        m: {n: {c: [] for c in args.concurrency} for n in args.servers} for m in args.models
    }
    failed = {(m, n) for m in args.models for n in ("mlflow", "bentoml") if n not in venvs}
    failed |= {(m, "mlhub-image") for m in args.models if image is None}
    for trial in range(1, args.trials + 1):
        for model_name in args.models:
            for name in args.servers:
                if (model_name, name) in failed:
                    continue  # not installed, or failed before: already reported
                server = None
                try:
                    print(f"trial {trial}: {model_name.upper()} on {name}", flush=True)
                    server = starters[name](work / model_name)
                    check_answers(server, rows, models[model_name])
                    script = lua_script(server, rows, work / f"{name}-{model_name}.lua")
                    url = server.url + server.path
                    run_wrk(wrk, script, url, max(args.concurrency), args.warmup)
                    for c in args.concurrency:
                        point = run_wrk(wrk, script, url, c, args.duration)
                        measured[model_name][name][c].append(point)
                        print(f"  c={c} {cell(point)}", flush=True)
                except Skip as exc:
                    failed.add((model_name, name))
                    skipped.append((f"{name} ({model_name})", str(exc)))
                    print(f"SKIPPING {name} for {model_name}: {exc}", flush=True)
                finally:
                    if server is not None:
                        stop(server.proc)
                        if server.container:
                            rm = ["docker", "rm", "-f", server.container]
                            subprocess.run(rm, capture_output=True)
    results = {
        m: {
            n: {c: median_point(t) for c, t in by_c.items() if t}
            for n, by_c in by_name.items()
            if any(by_c.values())
        }
        for m, by_name in measured.items()
    }
    versions = versions_of(venvs)
    report(results, args.concurrency, skipped, versions, args)
    print(f"took {datetime.datetime.now() - started}; logs and scripts in {work}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": {
                        m: {s: {str(c): p for c, p in v.items()} for s, v in r.items()}
                        for m, r in results.items()
                    },
                    "skipped": skipped,
                    "versions": versions,
                    "args": {k: str(v) for k, v in vars(args).items()},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
