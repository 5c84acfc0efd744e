"""Click Publish -> endpoint ready, in embedded mode: the issue's ``bench/publish`` (target < 3 s).

The same browser flow as ``notebook_times.py`` (b), whose pieces it reuses, without the login and
spawn around every run: one real ``mlhub up`` (the component tests' ``EmbeddedHub``), one user
logged in through the form, one spawn, the notebook opened in headless Debian Chromium and run;
then ``--runs`` times: type a fresh model name into the "Publish model" panel, click Publish and
time until the panel shows the endpoint. Every run is a model's first publish: bundle, upload,
the new serving process started and ready (its own load check), the proxy route and the API
key minted for the snippets. Not timed: a predict with that key, then the model is deleted, so
every run starts with nothing serving.

    .venv/bin/python bench/publish.py              # median of 5
    .venv/bin/python bench/publish.py --runs 9
    # as before the serving process was the load check: a separate check process first
    .venv/bin/python bench/publish.py --hub-config "import sys
    c.LocalDeployer.check_commands = {'python': [sys.executable, '-m', 'mlhub.serving', 'check',
                                                 '--bundle', '{bundle}']}"

It prints every run, the median, min and max, the load average before and after (the machine
is shared: the absolute numbers move with it), and the command. Everything it starts is
stopped at the end, also on Ctrl-C or SIGTERM.
"""

import argparse
import contextlib
import datetime
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import sys
import time

from notebook_times import (
    CHROMIUM_ARGS,
    INTERRUPTED,
    ROOT,
    STEP_TIMEOUT,
    Bench,
    Run,
    _interrupt,
    close_quietly,
    kill_descendants,
    publish,
    run_all_cells,
    sync_playwright,
)

TARGET = 3.0  # seconds, issue 3


def load():
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def measure(bench, browser, runs):
    """Seconds from each click to the endpoint shown, ``runs`` fresh models in one notebook."""
    bench.reset_workspace()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(STEP_TIMEOUT * 1000)
        bench.login_to_notebook(page, Run())
        run_all_cells(page)
        page.locator(".mlhub-publish-panel").nth(0).locator(".mlhub-publish-button").wait_for()
        seconds = []
        for index in range(1, runs + 1):
            name = f"click-{index}"
            _, elapsed, _, snippets = publish(page, 0, name)
            key = next(t for t in re.split(r"[\s\"']+", snippets) if t.startswith("mlhk_"))
            bench.check_predict(name, key)
            bench.delete_model(name)
            seconds.append(elapsed)
            print(f"run {index}: {elapsed:.2f} s (load average {load()})", flush=True)
            time.sleep(1)  # let the deleted model's processes go before the next click
        return seconds
    finally:
        close_quietly(context)
        bench.stop_server()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="publishes to time (default 5)")
    parser.add_argument(
        "--hub-config",
        default="",
        metavar="PYTHON",
        help="more lines for the hub's mlhub config file, to compare settings, e.g. "
        "'c.LocalDeployer.drain_seconds = 1'",
    )
    args = parser.parse_args(argv)
    args.no_peers = True  # Bench's option: this script has no peers
    executable = shutil.which("chromium")
    if executable is None:
        sys.exit("Debian's chromium is missing: run scripts/system-deps")
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(kill_descendants)
            bench = Bench(args, stack)
            print("starting mlhub up ...", flush=True)
            bench.start_hub()
            before = load()
            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            stack.callback(close_quietly, browser)
            seconds = measure(bench, browser, args.runs)
            report(seconds, before, browser)
    except KeyboardInterrupt:
        if not INTERRUPTED.is_set():
            raise
        print("interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    return 0


def report(seconds, before, browser):
    median = statistics.median(seconds)
    print()
    print(
        f"Publish click -> endpoint ready, embedded mode, {datetime.datetime.now():%Y-%m-%d %H:%M}"
    )
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, chromium {browser.version}")
    print(f"load average (1/5/15 min): {before} before, {load()} after")
    print(f"runs [s]: {', '.join(f'{s:.2f}' for s in seconds)}")
    print(f"median {median:.2f} s, min {min(seconds):.2f}, max {max(seconds):.2f}")
    verdict = "met" if median < TARGET else "missed"
    print(f"target (issue 3): median under {TARGET:g} s: {verdict}")
    command = shlex.join([".venv/bin/python", "bench/publish.py", *sys.argv[1:]])
    print(f"reproduce: cd {ROOT} && {command}")


if __name__ == "__main__":
    sys.exit(main())
