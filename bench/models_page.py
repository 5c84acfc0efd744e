"""How fast the Models page opens, next to the hub's own pages a user knows.

One real ``mlhub up`` (the ``EmbeddedHub`` harness of the component tests) with ``--models``
published models of one user (a small scikit-learn model each, published through the REST API;
their versions, keys and events are what the pages show), and headless Debian Chromium driven
by Playwright, logged in through the hub's form as that user. Each of ``--runs`` rounds loads,
in a fresh page each, until the browser's ``load`` event:

- ``models list``: the Models page (``/services/mlhub-publisher/``), every model listed;
- ``model page``: one model's page (versions, keys, events, its log, snippets);
- peers, the hub's own pages: ``hub home`` (``/hub/home``) and ``hub token`` (``/hub/token``).

It prints the median and worst of each, the ratio of each Models page to the hub's home, the
versions and the machine, and the command to reproduce. Every process it starts is stopped at
the end.

    .venv/bin/python bench/models_page.py --models 20 --runs 10
"""

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jupyterhub
import numpy as np
from playwright.sync_api import sync_playwright
from sklearn.linear_model import LinearRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.embedded_hub import running_hub  # noqa: E402
from support.labpage import CHROMIUM_ARGS, SUBMIT  # noqa: E402

from mlhub import __version__  # noqa: E402
from mlhub.bundle import save_bundle  # noqa: E402

CONFIG = "c.PublisherApp.default_workers = 1\nc.LocalDeployer.fork_server = False\n"


def publish_models(hub, count, work):
    X = np.arange(8.0).reshape(4, 2)
    for i in range(count):
        model = LinearRegression().fit(X, X[:, 0] * (i + 1))
        save_bundle(model, work / f"m{i}", name=f"model-{i}", example=X[:2])
        hub.client.publish(work / f"m{i}", f"model-{i}")
    hub.client.create_key("model-0", "bench")


def load_seconds(context, url):
    """From navigation start to the load event, in a fresh page."""
    page = context.new_page()
    try:
        started = time.perf_counter()
        reply = page.goto(url, wait_until="load")
        elapsed = time.perf_counter() - started
        if reply is None or reply.status != 200:
            raise RuntimeError(f"{url} answered {reply.status if reply else 'nothing'}")
        return elapsed
    finally:
        page.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=20, help="published models (default 20)")
    parser.add_argument("--runs", type=int, default=10, help="rounds of page loads (default 10)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mlhub-bench-page-") as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)
        (tmp / "hub").mkdir()
        with running_hub(tmp / "hub", CONFIG, ("alice",)) as hub:
            started = time.perf_counter()
            publish_models(hub, args.models, tmp)
            print(f"published {args.models} models in {time.perf_counter() - started:.0f} s")
            pages = {
                "models list": f"{hub.url}services/mlhub-publisher/",
                "model page": f"{hub.url}services/mlhub-publisher/models/alice/model-0",
                "hub home": f"{hub.url}hub/home",
                "hub token": f"{hub.url}hub/token",
            }
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS
                )
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"{hub.url}hub/login")
                page.fill("input[name=username]", "alice")
                page.fill("input[name=password]", hub.passwords["alice"])
                page.click(SUBMIT)
                page.wait_for_url("**/hub/**")
                page.goto(pages["models list"])  # the OAuth round trip, once, not timed
                page.close()
                times = {name: [] for name in pages}
                for _ in range(args.runs):
                    for name, url in pages.items():
                        times[name].append(load_seconds(context, url))
                browser.close()

    home = statistics.median(times["hub home"])
    print(f"\nmlhub {__version__}, JupyterHub {jupyterhub.__version__}, Chromium headless")
    print(f"{platform.node()}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"{args.models} models, {args.runs} loads each (seconds, navigation to load event)\n")
    print(f"{'page':<12} {'median':>8} {'worst':>8} {'vs hub home':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<12} {median:8.3f} {max(values):8.3f} {median / home:11.2f}x")
    print(
        f"\nreproduce: .venv/bin/python bench/models_page.py --models {args.models} "
        f"--runs {args.runs}"
    )


if __name__ == "__main__":
    main()
