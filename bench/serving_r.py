"""R serving next to Python serving: the same model, the same contract, requests per second.

Serves one model, ``2*temp + pressure + code(line) + count`` (a factor column and an integer
column; an ``lm`` in R, a small pyfunc class in Python: tests/support/rmodels.py), with

- ``r``: the R runtime (``Rscript images/serving-r/mlhub/serving_r/serve.R``: plumber, one R
  process, which is what embedded mode runs for an R model whatever its replicas);
- ``python-1``: the Python runtime, ``python -m mlhub.serving --workers 1`` (uWSGI, one worker:
  the same number of processes as ``r``);
- ``python-2``: the same with 2 workers (the publisher's default);

all with authentication (an API key in the access file), validation and metrics on, on
127.0.0.1. ``wrk`` posts one-record JSON bodies (64 different records, in turn) at each
concurrency for ``--duration`` seconds after a warm-up (the Lua script and wrk helpers are
bench/serving.py's). Every process it starts is stopped when it ends.

    .venv/bin/python bench/serving_r.py --duration 10 --concurrency 1,8
"""

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT / "tests" / "component")]

import serving as base  # noqa: E402  (bench/serving.py: wrk, processes)
from support.rmodels import formula_bundle  # noqa: E402
from test_serving_contract import Formula, example_frame  # noqa: E402

from mlhub import rlang  # noqa: E402
from mlhub.bundle import save_bundle  # noqa: E402

KEY = "mlhk_bench-key"


def records(n=64, seed=0):
    rng = random.Random(seed)
    return [
        {
            "temp": round(rng.uniform(-3, 3), 3),
            "pressure": round(rng.uniform(-5, 5), 3),
            "line": rng.choice("abc"),
            "count": rng.randrange(10),
        }
        for _ in range(n)
    ]


def start(name, argv, work, env):
    port = base.free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("MLHUB_")}
    full.update(env)
    argv = [a.replace("{port}", str(port)) for a in argv]
    url = f"http://127.0.0.1:{port}"
    return base.start(
        name,
        argv,
        env=full,
        log=work / f"{name}.log",
        ready_url=f"{url}/readyz",
        url=url,
        path="/v1/predict",
        body=lambda record: {"instances": [record]},
        headers={"Authorization": f"token {KEY}", "Content-Type": "application/json"},
    )


def lua(server, rows, path):
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in server.headers.items())
    bodies = ",\n".join(
        "  " + json.dumps(json.dumps(server.body(row), separators=(",", ":"))) for row in rows
    )
    path.write_text(base.WRK_SCRIPT.format(headers=headers, bodies=bodies, path=server.path))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per point")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per server")
    parser.add_argument("--concurrency", default="1,8", help="connections, comma-separated")
    args = parser.parse_args(argv)
    if rlang.rscript() is None:
        sys.exit(f"R is not installed: {rlang.INSTALL_HINT}")
    wrk = base.ensure_wrk()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = records()
    with tempfile.TemporaryDirectory(prefix="mlhub-bench-r-") as tmp:
        work = Path(tmp)
        access = work / "access.json"
        access.write_text(json.dumps({"key_hashes": [hashlib.sha256(KEY.encode()).hexdigest()]}))
        env = {"MLHUB_ACCESS_FILE": str(access), "MLHUB_AUTH": "on"}
        formula_bundle(work / "r", name="formula")
        save_bundle(Formula(), work / "py", name="formula", example=example_frame())
        serve_r = [rlang.RSCRIPT, str(rlang.serve_script()), "--bundle", str(work / "r")]
        serve_py = [sys.executable, "-m", "mlhub.serving", "--bundle", str(work / "py")]
        servers = {
            "r": serve_r + ["--port", "{port}"],
            "python-1": serve_py + ["--port", "{port}", "--workers", "1"],
            "python-2": serve_py + ["--port", "{port}", "--workers", "2"],
        }
        results = {}
        for name, command in servers.items():
            server = start(name, command, work, env)
            try:
                answer = base.requests.post(
                    server.url + server.path, json=server.body(rows[0]), headers=server.headers
                ).json()
                print(f"{name}: first answer {answer}", flush=True)
                script = lua(server, rows, work / f"{name}.lua")
                base.run_wrk(wrk, script, server.url, 1, args.warmup)
                for c in levels:
                    results[(name, c)] = base.run_wrk(wrk, script, server.url, c, args.duration)
            finally:
                base.stop(server.proc)
    print(f"\n{'server':<10}" + "".join(f"{'c=' + str(c):>26}" for c in levels))
    for name in servers:
        cells = []
        for c in levels:
            p = results[(name, c)]
            bad = p["errors"] + p["non_2xx"]
            cells.append(f"{p['rps']:8.0f} req/s p50 {p['p50_ms']:6.2f} ms" + (" !" if bad else ""))
        print(f"{name:<10}" + "".join(f"{cell:>26}" for cell in cells))
    print("(! = some requests failed or were not 2xx)")


if __name__ == "__main__":
    main()
