"""Spawn -> ready notebook server in embedded mode: mlhub's launcher against plain
``jupyterhub-singleuser``, side by side in one run.

One real ``mlhub up`` per command (the component tests' ``EmbeddedHub``, on free ports in a
temporary data directory), one user, and ``--runs`` times: ``POST /hub/api/users/<u>/server``
with the "python" profile, then poll the hub's REST API until the server is ready; stop it and
wait until it is gone, so every run is a real spawn. The two commands are

- ``jupyterhub-singleuser``: what a plain JupyterHub with a local spawner runs;
- ``python -m mlhub.extension.singleuser``: mlhub's default (``ProfileLocalSpawner.cmd``, the
  Kubernetes mode's ``cmd`` and the notebook images' CMD), the same server without a 2 s import
  it never uses (see that module).

    .venv/bin/python bench/spawn.py            # median of 5 each
    .venv/bin/python bench/spawn.py --runs 9

It prints every run, the median, min and max of each command, their ratio, the load average
before and after (the machine is shared: absolute numbers move with it) and the command.
Everything it starts is stopped at the end.
"""

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.embedded_hub import EmbeddedHub, wait_for  # noqa: E402

COMMANDS = {
    "jupyterhub-singleuser": (
        '[os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")]'
    ),
    "mlhub launcher": '[sys.executable, "-m", "mlhub.extension.singleuser"]',
}


def load():
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def spawn_times(cmd_expr, runs):
    """Seconds from each spawn request to a ready server, with ``c.ProfileLocalSpawner.cmd``."""
    hub = EmbeddedHub(
        Path(tempfile.mkdtemp(prefix="mlhub-bench-spawn-")),
        config=f"import os, sys\nc.ProfileLocalSpawner.cmd = {cmd_expr}\n",
    )
    try:
        hub.start()
        token = hub.token("ada", hub.add_user("ada"))
        api = requests.Session()
        api.headers["Authorization"] = f"token {token}"
        user = f"{hub.url}hub/api/users/ada"

        def server():
            return api.get(user, timeout=10).json().get("servers", {}).get("")

        times = []
        for _ in range(runs):
            started = time.monotonic()
            resp = api.post(f"{user}/server", json={"profile": "python"}, timeout=60)
            resp.raise_for_status()
            wait_for(lambda: (server() or {}).get("ready"), "the server", interval=0.05)
            times.append(time.monotonic() - started)
            api.delete(f"{user}/server", timeout=60).raise_for_status()
            wait_for(lambda: server() is None, "the server to stop", interval=0.1)
        hub.stop()
        return times
    finally:
        hub.kill()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="spawns per command (default 5)")
    args = parser.parse_args(argv)
    print(f"load average before: {load()}", flush=True)
    medians = {}
    for label, expr in COMMANDS.items():
        times = spawn_times(expr, args.runs)
        medians[label] = statistics.median(times)
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"{label:22} runs [{runs}] s; median {medians[label]:.2f}, "
            f"min {min(times):.2f}, max {max(times):.2f}",
            flush=True,
        )
    ratio = medians["mlhub launcher"] / medians["jupyterhub-singleuser"]
    print(f"mlhub launcher / jupyterhub-singleuser (median spawn -> ready): {ratio:.2f}")
    print(f"load average after: {load()}")
    print("command:", shlex.join([sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
