"""What published models cost while nobody calls them, and how fast a sleeping one answers: mlhub
beside ``mlflow models serve`` (one server per model, the way MLflow users run many), in one run.

A real ``mlhub up`` (the component tests' ``EmbeddedHub``) gets ``--models`` models (default
100, as the issue asks): small ones (``LogisticRegression`` on ``make_classification(2000,
20)``), every tenth a medium one (``RandomForestClassifier(100 trees, depth 10)``) and, when R
and plumber are installed, one R model. Then:

1. **awake**: every model published and answering (kept warm while the others publish); the
   proportional set size (PSS, ``/proc/<pid>/smaps_rollup``: shared pages divided among the
   processes sharing them, so sums are honest) of every serving process, in total and per
   model, and of the fork server every Python model is forked from (``LocalDeployer.fork_server``:
   it holds the libraries they share; "all-in" divides it among the models);
2. **asleep**: every model told to sleep after 1 s (``sleep_after``); once all sleep, the PSS
   of what still runs for them (nothing) and what each keeps on disk (its unpacked bundle and
   stored artifact, the "records");
3. **wake**: a trickle of ``--requests`` requests, one every ``--gap`` seconds, each to a
   model that sleeps (chosen at random): the latency of each through the hub's proxy (held by
   the publisher while the model wakes), p50 / p99; and, for contrast, a request to an awake
   model;
4. **mlflow**: ``--mlflow-models`` copies of the small model served by ``mlflow models serve
   -w 1 --env-manager local`` side by side: PSS per model, and the time from starting a
   server to its first answer (what "waking" an MLflow model means: it has no scale to zero).

The issue's targets: an awake small Python model at most 60 MB PSS all-in, a sleeping one
nothing but its records, wake p50 under 1 s and p99 under 2 s on an idle machine.

    .venv/bin/python bench/density.py                       # ~15 min, ~20 GB at 100 models
    .venv/bin/python bench/density.py --models 30 --requests 30 --mlflow-models 5
"""

import argparse
import contextlib
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import requests  # noqa: E402
import serving as bench  # noqa: E402 (bench/serving.py: peer venvs, servers, timing)
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from support.embedded_hub import EmbeddedHub, process_table  # noqa: E402
from support.publishing import model_pids  # noqa: E402

from mlhub.bundle import save_bundle  # noqa: E402
from mlhub.publisher.client import PublisherClient  # noqa: E402

USER = "bencher"
HUB_CONFIG = """
c.IdlePolicy.interval = 0.5
c.IdlePolicy.sleep_after = 0
c.LocalDeployer.drain_seconds = 0.5
"""
MLFLOW_VERSION = "3.17.2"  # performance-anchors.md


def pss_kib(pid):
    """The proportional set size of one process in KiB, or 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def tree(pid):
    """``pid`` and every descendant of it."""
    table = process_table()
    found, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _) in table.items():
            if ppid == parent and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def mib(kib):
    return kib / 1024


def bundles(work):
    """The bundles to publish: ``{"small": dir, "medium": dir}``, made once per work dir."""
    made = {}
    X, y = make_classification(2000, n_features=20, random_state=0)
    for kind, model in (
        ("small", LogisticRegression(max_iter=500)),
        ("medium", RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0)),
    ):
        path = work / f"density-{kind}"
        if not (path / "mlhub.yaml").is_file():
            save_bundle(model.fit(X, y), path, name=kind, example=X[:5])
        made[kind] = path
    return made, X[:1].tolist()


def r_bundle(work):
    """The R model's bundle, or None when R or plumber is missing."""
    if not shutil.which("Rscript"):
        return None
    check = subprocess.run(["Rscript", "-e", "library(plumber)"], capture_output=True)
    if check.returncode:
        return None
    from support.rmodels import constant_bundle

    return constant_bundle(work / "density-r", 1.0, "rmodel")


def fork_server_pids(hub):
    fork_dir = os.path.realpath(hub.data_dir / "forkserver")
    pids = []
    for pid in process_table():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd") == fork_dir:
                pids.append(pid)
    return pids


def disk_bytes(*paths):
    total = 0
    for path in paths:
        for item in Path(path).rglob("*"):
            with contextlib.suppress(OSError):
                if item.is_file():
                    total += item.stat().st_size
    return total


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else None


def run_mlhub(args, work, small_row):
    made, row = bundles(work)
    rdir = None if args.no_r else r_bundle(work)
    hub = EmbeddedHub(Path(tempfile.mkdtemp(prefix="mlhub-bench-density-")), config=HUB_CONFIG)
    result = {}
    try:
        hub.start()
        token = hub.token(USER, hub.add_user(USER))
        client = PublisherClient(url=hub.url, token=token, poll_interval=0.2)
        names = []
        started = time.monotonic()
        for i in range(args.models):
            kind = "medium" if i % 10 == 9 else "small"
            source = rdir if (rdir is not None and i == args.models - 1) else made[kind]
            name = f"m{i:03d}-{'r' if source is rdir else kind}"
            client.publish(source, name)
            names.append(name)
            if (i + 1) % 10 == 0:
                print(f"  published {i + 1}/{args.models}", flush=True)
        result["publish_s"] = time.monotonic() - started
        rows = {n: ([[0.0]] if n.endswith("-r") else row) for n in names}
        for name in names:  # every model answers, once
            answer = requests.post(
                f"{hub.url}models/{USER}/{name}/v1/predict",
                json={"instances": rows[name]},
                headers={"Authorization": f"token {token}"},
                timeout=60,
            )
            answer.raise_for_status()
        time.sleep(2)
        per_model = {n: sum(pss_kib(p) for p in model_pids(hub, USER, n)) for n in names}
        result["awake_kib"] = per_model
        result["procs_per_model"] = statistics.median(len(model_pids(hub, USER, n)) for n in names)
        result["fork_server_kib"] = sum(pss_kib(p) for p in fork_server_pids(hub))

        for name in names:
            client.configure(name, sleep_after=1)
        deadline = time.monotonic() + 120 + args.models
        while time.monotonic() < deadline:
            if all(m["status"] == "sleeping" for m in client.list()):
                break
            time.sleep(1)
        result["asleep_kib"] = sum(pss_kib(p) for n in names for p in model_pids(hub, USER, n))
        result["sleeping"] = sum(m["status"] == "sleeping" for m in client.list())
        result["records_bytes"] = disk_bytes(
            hub.data_dir / "models", hub.data_dir / "artifacts"
        ) / len(names)

        wakes, failures = [], 0
        pool = [n for n in names if not n.endswith("-r")]
        for i in range(args.requests):
            time.sleep(args.gap)
            sleeping = {m["name"] for m in client.list() if m["status"] == "sleeping"}
            candidates = [n for n in pool if n in sleeping]
            if not candidates:
                continue
            name = random.Random(i).choice(candidates)
            t0 = time.perf_counter()
            answer = requests.post(
                f"{hub.url}models/{USER}/{name}/v1/predict",
                json={"instances": rows[name]},
                headers={"Authorization": f"token {token}"},
                timeout=60,
            )
            elapsed = time.perf_counter() - t0
            if answer.status_code == 200:
                wakes.append(elapsed)
            else:
                failures += 1
        result["wakes"], result["wake_failures"] = wakes, failures
        awake_name = pool[0]
        client.configure(awake_name, sleep_after=0)
        requests.post(
            f"{hub.url}models/{USER}/{awake_name}/v1/predict",
            json={"instances": rows[awake_name]},
            headers={"Authorization": f"token {token}"},
            timeout=60,
        )
        warm = []
        for _ in range(20):
            t0 = time.perf_counter()
            requests.post(
                f"{hub.url}models/{USER}/{awake_name}/v1/predict",
                json={"instances": rows[awake_name]},
                headers={"Authorization": f"token {token}"},
                timeout=60,
            )
            warm.append(time.perf_counter() - t0)
        result["warm_p50"] = percentile(warm, 0.5)
        result["models"] = names
    finally:
        with contextlib.suppress(Exception):
            hub.stop()
        hub.kill()
    return result


MLFLOW_SAVE = """
import pickle, sys, mlflow.sklearn
model = pickle.load(open(sys.argv[1], "rb"))
mlflow.sklearn.save_model(model, sys.argv[2])
"""


def run_mlflow(args, work, row):
    """``--mlflow-models`` servers of the small model side by side: PSS each, start -> first
    answer each."""
    venv = bench.peer_venv("mlflow", MLFLOW_VERSION, timeout=900)
    made, _ = bundles(work)
    dest = work / "density-mlflow-model"
    if not (dest / "MLmodel").is_file():
        script = work / "density_mlflow_save.py"
        script.write_text(MLFLOW_SAVE)
        pkl = next(made["small"].glob("model/*.pkl"), None) or next(made["small"].rglob("*.pkl"))
        subprocess.run([str(venv / "bin" / "python"), str(script), str(pkl), str(dest)], check=True)
    servers, starts = [], []
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    try:
        for i in range(args.mlflow_models):
            port = bench.free_port()
            argv = [str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(dest), "-w", "1"]
            argv += ["-p", str(port), "-h", "127.0.0.1", "--env-manager", "local"]
            log = open(work / f"density-mlflow-{i}.log", "wb")  # noqa: SIM115 (closed below)
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
            servers.append((proc, log))
            url = f"http://127.0.0.1:{port}/invocations"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    answer = requests.post(url, json={"inputs": row}, timeout=5)
                    if answer.status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.05)
            else:
                raise RuntimeError(f"mlflow server {i} did not answer; see {log.name}")
            starts.append(time.perf_counter() - t0)
        time.sleep(2)
        per_model = [sum(pss_kib(p) for p in tree(proc.pid)) for proc, _ in servers]
        procs = statistics.median(len(tree(proc.pid)) for proc, _ in servers)
    finally:
        for proc, log in servers:
            bench.stop(proc)
            log.close()
    return {"pss_kib": per_model, "starts": starts, "procs": procs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100, help="models published (100)")
    parser.add_argument("--requests", type=int, default=50, help="wake requests (50)")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between them (1)")
    parser.add_argument("--mlflow-models", type=int, default=10, help="MLflow servers (10)")
    parser.add_argument("--no-r", action="store_true", help="no R model")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir(), "mlhub-bench"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    _, row = bundles(args.work)
    print(f"mlhub: {args.models} models ...", flush=True)
    ours = run_mlhub(args, args.work, row)
    print(f"mlflow models serve: {args.mlflow_models} servers ...", flush=True)
    try:
        theirs = run_mlflow(args, args.work, row)
    except (bench.Skip, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"  skipped: {exc}")
        theirs = None
    report(args, ours, theirs, argv)


def report(args, ours, theirs, argv):
    awake = ours["awake_kib"]
    small = [v for n, v in awake.items() if n.endswith("-small")]
    medium = [v for n, v in awake.items() if n.endswith("-medium")]
    r_model = [v for n, v in awake.items() if n.endswith("-r")]
    wakes = ours["wakes"]
    load = os.getloadavg()[0]
    print()
    print(
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, ", end=""
    )
    print(f"load {load:.2f}; {args.models} models published in {ours['publish_s']:.0f} s")
    print()
    print("| | mlhub | mlflow models serve | ratio |")
    print("|---|---|---|---|")
    mlflow_pss = statistics.median(theirs["pss_kib"]) if theirs else None
    small_pss = statistics.median(small) if small else None
    print(
        f"| processes per model (awake) | {ours['procs_per_model']:g} | "
        f"{theirs['procs'] if theirs else '-'} | |"
    )
    ratio = f"{mlflow_pss / small_pss:.2f}x less" if theirs and small_pss else "-"
    print(
        f"| PSS per small model, awake (median) | {mib(small_pss or 0):.1f} MiB | "
        f"{mib(mlflow_pss) if theirs else 0:.1f} MiB | {ratio} |"
    )
    if medium:
        print(f"| PSS per medium model, awake | {mib(statistics.median(medium)):.1f} MiB | - | |")
    if r_model:
        print(f"| PSS of the R model, awake | {mib(r_model[0]):.1f} MiB | - | |")
    total = sum(awake.values())
    all_in = (total + ours["fork_server_kib"]) / len(awake)
    print(
        f"| PSS per model all-in (all models + the fork server, / {len(awake)}) | "
        f"{mib(all_in):.1f} MiB | {mib(mlflow_pss) if theirs else 0:.1f} MiB | "
        f"{f'{mlflow_pss / all_in:.2f}x less' if theirs and all_in else '-'} |"
    )
    print(
        f"| PSS of all {args.models} models, awake | {mib(total):.0f} MiB (+ fork server "
        f"{mib(ours['fork_server_kib']):.0f} MiB) | {mib((mlflow_pss or 0) * args.models):.0f} MiB "
        f"(extrapolated) | |"
    )
    print(
        f"| PSS of all {args.models} models, asleep ({ours['sleeping']} sleeping) | "
        f"{mib(ours['asleep_kib']):.0f} MiB; records {ours['records_bytes'] / 1024:.0f} KiB "
        "per model on disk | no sleep: as awake | |"
    )
    if wakes:
        p50, p99 = percentile(wakes, 0.5), percentile(wakes, 0.99)
        mp50 = percentile(theirs["starts"], 0.5) if theirs else None
        mp99 = percentile(theirs["starts"], 0.99) if theirs else None
        print(
            f"| first answer from zero, p50 / p99 ({len(wakes)} wakes, "
            f"{ours['wake_failures']} failed) | {p50:.2f} / {p99:.2f} s | "
            + (
                f"{mp50:.2f} / {mp99:.2f} s (a server started) | {mp50 / p50:.1f}x faster |"
                if theirs
                else "- | |"
            )
        )
        print(f"| an awake model's answer, p50 | {ours['warm_p50'] * 1000:.1f} ms | | |")
    print()
    met_mem = small_pss is not None and mib(small_pss) <= 60
    print(
        f"target: an awake small model <= 60 MB PSS: {mib(small_pss or 0):.1f} MiB -> "
        f"{'met' if met_mem else 'MISSED'}; asleep nothing running: "
        f"{mib(ours['asleep_kib']):.0f} MiB -> {'met' if ours['asleep_kib'] == 0 else 'MISSED'}"
    )
    if wakes:
        met = p50 < 1 and p99 < 2
        print(
            f"target: wake p50 < 1 s, p99 < 2 s: {p50:.2f} / {p99:.2f} s -> "
            f"{'met' if met else 'MISSED'}"
        )
    print(f"reproduce: .venv/bin/python bench/density.py {' '.join(argv or sys.argv[1:])}")


if __name__ == "__main__":
    main()
