"""How long a data scientist waits in mlhub's browser flow, next to what they would otherwise run.

docs/design.md wants every number to come from a benchmark under ``bench/``, measured side by side
with the tools users would pick instead. This script starts one real ``mlhub up`` (the
``EmbeddedHub`` harness of the component tests) and drives headless Debian Chromium through
Playwright, as the browser test does, over ``--runs`` runs:

(a) login -> notebook ready: from submitting the hub's login form, through choosing the
    "python" profile on the spawn page and the spawn, until JupyterLab shows the notebook
    (opened from the file browser) with an idle kernel. The user's server is stopped after
    every run, so each run is a real spawn. Peer: a local ``jupyter lab`` from process start
    until the same notebook shows an idle kernel (no login, no spawn).
(b) click -> endpoint ready: from clicking Publish in the "Publish model" panel until the
    panel shows the endpoint URL, with a fresh model name per run; then (not timed) a predict
    with the API key from the panel's snippet. A re-publish of a retrained model under the
    same name (a new version: a rolling update) is timed separately, both until the endpoint
    answers with the new version and until the panel says ready (which includes the
    deployer's drain of the old version). Peer: ``mlflow models serve`` of the same pipeline,
    from process start until its first successful ``/invocations``; mlflow is installed into
    a throwaway venv under /tmp (never the project's), and if that fails or takes longer
    than ``--install-timeout`` the peer is skipped and the output says so.

Every process it starts is stopped at the end, also on Ctrl-C or SIGTERM.

    .venv/bin/python bench/notebook_times.py --runs 5
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jupyterhub
import jupyterlab
import requests
import sklearn
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright
from sklearn.datasets import load_iris

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.embedded_hub import EmbeddedHub, free_port, tree  # noqa: E402
from support.labpage import CHROMIUM_ARGS, KernelDialog, run_all_cells, wait_for_kernel  # noqa: E402

USER = "bench"
NOTEBOOK = "bench.ipynb"
VENV_BIN = Path(sys.executable).parent
STEP_TIMEOUT = 180  # seconds any single waited-for step may take before the run is abandoned

# The same pipeline for mlhub and for the mlflow peer, so both serve the same model.
TRAIN = """\
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

X, y = load_iris(return_X_y=True, as_frame=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
"""
# Each panel gets its own one-model namespace, so the first panel still publishes the first
# model after the retrain cell ran; the second panel publishes a new version.
PANEL = """\
import mlhub
mlhub.publish_panel({"model": model}, example=X.head(3))
"""
RETRAIN = """\
model_v2 = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500)).fit(X, y)
mlhub.publish_panel({"model_v2": model_v2}, example=X.head(3))
"""
MLFLOW_SAVE = TRAIN + "import sys, mlflow.sklearn\nmlflow.sklearn.save_model(model, sys.argv[1])\n"


def notebook_json():
    """The notebook every run opens: it names the python3 kernel, as a saved notebook does."""
    cells = [
        {"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
        for src in (TRAIN, PANEL, RETRAIN)
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    metadata = {"kernelspec": kernelspec}
    return json.dumps({"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 4})


def rows():
    """20 iris rows as records: the body of every predict, to mlhub and to mlflow."""
    return load_iris(as_frame=True).data.sample(20, random_state=1).to_dict(orient="records")


def poll(check, what, timeout=STEP_TIMEOUT, interval=0.05):
    """``check()`` until truthy; the short interval keeps polling error under 50 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


INTERRUPTED = threading.Event()


def _interrupt(signum, frame):
    """Ctrl-C and SIGTERM alike unwind through every cleanup step."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


def close_quietly(closable):
    """Close a Playwright browser or context that may be gone already: Ctrl-C in a terminal
    also reaches Playwright's driver, which then exits and takes the browser with it."""
    with contextlib.suppress(PlaywrightError):
        closable.close()


# -------------------------------------------------------------------------------- processes


class Group:
    """A process started in its own session, stopped with its whole group (mlflow and jupyter
    lab start workers and kernels that must not outlive the benchmark)."""

    def __init__(self, argv, log, **kwargs):
        self.log = Path(log)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kwargs,
            )

    def check_alive(self):
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.proc.args[0]} exited {self.proc.returncode}:\n{tail}")

    def stop(self, timeout=20):
        """SIGTERM the group, SIGKILL it if it has not exited within ``timeout`` seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        # the group may outlive its leader (a kernel, a worker): make sure it is gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


# -------------------------------------------------------------------------------- results


@dataclass
class Run:
    login: float = None  # login form submitted -> spawn page
    spawn: float = None  # spawn form submitted -> JupyterLab's URL
    lab: float = None  # JupyterLab's URL -> notebook open, kernel idle (page + kernel)
    page: float = None  # JupyterLab's URL -> the file browser lists the notebook
    kernel: float = None  # notebook double-clicked -> its kernel idle
    dialog: bool = False  # JupyterLab asked "Select Kernel" (clicked, time included)
    peer_lab: float = None  # jupyter lab start -> notebook open, kernel idle
    publish: float = None  # Publish clicked -> endpoint shown
    republish_serving: float = None  # Publish clicked -> endpoint answers with the new version
    republish: float = None  # Publish clicked -> endpoint shown
    peer_mlflow: float = None  # mlflow models serve start -> first 200 from /invocations

    @property
    def notebook(self):
        return self.login + self.spawn + self.lab


def cell(value):
    """A table cell: seconds with two decimals, "-" for not measured, text as is."""
    if value is None:
        return "-"
    return value if isinstance(value, str) else f"{value:.2f}"


def summary(values):
    """(median, min, max) of the values measured (None: not measured), or Nones."""
    got = [v for v in values if v is not None]
    return (statistics.median(got), min(got), max(got)) if got else (None, None, None)


def table(title, columns, runs):
    """One line per run, then the median, min and max of every timed column."""
    grid = [["run", *(name for name, _ in columns)]]
    for i, run in enumerate(runs, 1):
        grid.append([str(i), *(cell(getter(run)) for _, getter in columns)])
    for label, index in (("median", 0), ("min", 1), ("max", 2)):
        row = [label]
        for _, getter in columns:
            values = [getter(run) for run in runs]
            timed = all(not isinstance(v, str) for v in values)
            row.append(cell(summary(values)[index]) if timed else "")
        grid.append(row)
    widths = [max(len(row[k]) for row in grid) for k in range(len(grid[0]))]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        )
        for row in grid
    ]
    return "\n".join([title, *lines])


# -------------------------------------------------------------------------------- the peers


class MlflowPeer:
    """``mlflow models serve`` in a throwaway venv under /tmp, serving the same pipeline."""

    def __init__(self, venv, workdir, install_timeout):
        self.venv = Path(venv)
        self.workdir = Path(workdir)
        self.install_timeout = install_timeout
        self.model_dir = self.workdir / "mlflow-model"
        self.version = None
        self.skipped = None  # why the peer is not measured, if it is not

    def prepare(self):
        """Install mlflow (unless the venv already has it) and save the model; on failure or
        timeout record why and skip the peer instead of failing the whole benchmark."""
        python = self.venv / "bin" / "python"
        try:
            if not self._has_mlflow(python):
                print(f"installing mlflow into {self.venv} (at most {self.install_timeout:g} s)")
                base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}"
                subprocess.run([str(base), "-m", "venv", str(self.venv)], check=True)
                pins = ["mlflow", f"scikit-learn=={sklearn.__version__}"]
                subprocess.run(
                    [str(python), "-m", "pip", "install", "-q", *pins],
                    check=True,
                    timeout=self.install_timeout,
                    capture_output=True,
                )
            self.version = self._has_mlflow(python)
            subprocess.run(
                [str(python), "-c", MLFLOW_SAVE, str(self.model_dir)],
                check=True,
                timeout=STEP_TIMEOUT,
                capture_output=True,
                cwd=self.workdir,
            )
        except subprocess.TimeoutExpired as e:
            self.skipped = f"installing or preparing mlflow took over {e.timeout:g} s"
        except (subprocess.CalledProcessError, OSError) as e:
            detail = getattr(e, "stderr", b"") or b""
            self.skipped = f"mlflow could not be installed or run: {e} {detail[-500:]!r}"

    @staticmethod
    def _has_mlflow(python):
        if not python.exists():
            return None
        out = subprocess.run(
            [str(python), "-c", "import mlflow; print(mlflow.__version__)"],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() if out.returncode == 0 else None

    def measure(self, records):
        """Seconds from starting ``mlflow models serve`` to its first 200 on /invocations, or
        None (and the peer skipped from then on, with the reason) if it never answers."""
        port = free_port()
        argv = [str(self.venv / "bin" / "mlflow"), "models", "serve", "-m", str(self.model_dir)]
        argv += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "2"]
        url = f"http://127.0.0.1:{port}/invocations"
        start = time.perf_counter()
        # mlflow execs `uvicorn` by name: the venv's bin must come first on PATH
        env = {**os.environ, "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        server = Group(argv, self.workdir / "mlflow-serve.log", cwd=self.workdir, env=env)
        try:

            def answered():
                server.check_alive()
                with contextlib.suppress(requests.RequestException):
                    reply = requests.post(url, json={"dataframe_records": records}, timeout=10)
                    return reply.status_code == 200
                return False

            poll(answered, "mlflow models serve to answer /invocations")
            return time.perf_counter() - start
        except (RuntimeError, TimeoutError) as e:
            self.skipped = f"mlflow models serve failed: {e}"
            return None
        finally:
            server.stop()


def peer_jupyter_lab(page, workdir):
    """Seconds from starting a local ``jupyter lab`` to the notebook's kernel being idle:
    what a user without a hub runs. Its own HOME keeps JupyterLab's state out of yours."""
    home = Path(tempfile.mkdtemp(prefix="peer-lab-", dir=workdir))
    (home / NOTEBOOK).write_text(notebook_json())
    port, token = free_port(), secrets.token_hex(16)
    argv = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
    argv += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home}"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    base = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    server = Group(argv, home / "jupyter-lab.log", env={**os.environ, "HOME": str(home)})
    try:

        def up():
            server.check_alive()
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{base}api/status?token={token}", timeout=5).ok
            return False

        poll(up, "jupyter lab to answer")
        page.goto(f"{base}lab?token={token}")
        open_notebook(page)
        return time.perf_counter() - start
    finally:
        server.stop()


# -------------------------------------------------------------------------------- mlhub


def open_notebook(page):
    """Double-click the notebook in JupyterLab's file browser and wait for its idle kernel.
    Returns True if JupyterLab asked "Select Kernel" (clicked through, as a user would)."""
    page.locator(".jp-DirListing-item", has_text=NOTEBOOK).dblclick(timeout=STEP_TIMEOUT * 1000)
    try:
        wait_for_kernel(page, timeout=STEP_TIMEOUT * 1000)
        return False
    except KernelDialog:
        page.click(".jp-Dialog button:has-text('Select')")
        wait_for_kernel(page, timeout=STEP_TIMEOUT * 1000)
        return True


_PANEL_STATE = """([index, name]) => {
  const panel = document.querySelectorAll('.mlhub-publish-panel')[index];
  const shown = (cls) => {
    const el = panel && panel.querySelector(cls);
    return el && el.offsetParent !== null ? el.innerText : null;
  };
  const error = shown('.mlhub-error');
  if (error) return {error};
  const endpoint = shown('.mlhub-endpoint');
  // the endpoint of this publish, not one the panel still shows from an earlier one
  return endpoint && endpoint.includes(`/models/`) && endpoint.includes(`/${name}/`)
    ? {endpoint} : null;
}"""


def publish(page, index, name):
    """Type ``name`` into the ``index``-th panel, click Publish, wait for the endpoint.
    Returns (perf_counter() at the click, seconds from it, the endpoint's and snippets' text)."""
    panel = page.locator(".mlhub-publish-panel").nth(index)
    panel.locator(".mlhub-model-name input").fill(name)
    button = panel.locator(".mlhub-publish-button:not([disabled])")
    button.wait_for(timeout=STEP_TIMEOUT * 1000)
    start = time.perf_counter()
    button.click()
    state = page.wait_for_function(
        _PANEL_STATE, arg=[index, name], timeout=STEP_TIMEOUT * 1000, polling=20
    ).json_value()
    elapsed = time.perf_counter() - start
    if "error" in state:
        raise RuntimeError(f"publishing {name} failed in the panel: {state['error']}")
    return start, elapsed, state["endpoint"], panel.locator(".mlhub-snippets").inner_text()


class VersionWatch(threading.Thread):
    """Polls the model's public ``/readyz`` and notes when it first answers with a version
    other than ``old``: the moment the rolling update switched, which the panel reports only
    after the old version has drained."""

    def __init__(self, url, old):
        super().__init__(daemon=True)
        self.url, self.old = url, old
        self.switched = None  # perf_counter() of the first answer from another version
        self.new = None
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set() and self.switched is None:
            with contextlib.suppress(requests.RequestException, ValueError):
                version = requests.get(self.url, timeout=5).json().get("version")
                if version and version != self.old:
                    self.switched, self.new = time.perf_counter(), version
            self.stopping.wait(0.02)


class Bench:
    """One ``mlhub up`` with one user, measured run after run; its cleanup goes on ``stack``."""

    def __init__(self, args, stack):
        self.args = args
        self.stack = stack
        self.workdir = Path(tempfile.mkdtemp(prefix="mlhub-bench-"))
        stack.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        self.body = rows()
        self.hub = None
        self.password = None
        self.session = None
        self.publisher_token = None

    # -- setup ---------------------------------------------------------------------------

    def start_hub(self):
        (self.workdir / "hub").mkdir()
        self.hub = EmbeddedHub(self.workdir / "hub", config=self.args.hub_config)
        self.stack.callback(self._stop_hub)
        self.hub.start()
        self.password = self.hub.add_user(USER)
        self.session = self.hub.login(USER, self.password)
        reply = self.hub.hub_api(
            self.session, "POST", f"/users/{USER}/tokens", json={"note": "bench cleanup"}
        )
        reply.raise_for_status()
        self.publisher_token = reply.json()["token"]

    def _stop_hub(self):
        """Ctrl-C ``mlhub up`` (it stops user servers and models), then kill what is left."""
        try:
            self.hub.stop()
        except BaseException as e:  # noqa: BLE001 - whatever happened, kill() must still run
            print(f"mlhub up did not stop cleanly ({e!r}); killing what it started")
        finally:
            self.hub.kill()

    def reset_workspace(self):
        """Same start for every run: a fresh notebook and no saved JupyterLab layout (which
        would reopen the notebook by itself on the next login)."""
        workspace = self.hub.workspace(USER)
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / NOTEBOOK).write_text(notebook_json())
        for leftover in (".jupyter/lab/workspaces", ".ipynb_checkpoints"):
            shutil.rmtree(workspace / leftover, ignore_errors=True)

    # -- one run -------------------------------------------------------------------------

    def run_once(self, index, browser, mlflow):
        run = Run()
        self.reset_workspace()
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            page = context.new_page()
            page.set_default_timeout(STEP_TIMEOUT * 1000)
            self.login_to_notebook(page, run)
            self.hub.remember()
            self.publish_twice(page, index, run)
            self.hub.remember()
        finally:
            close_quietly(context)
            self.stop_server()
        if not self.args.no_peers:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            try:
                page = context.new_page()
                page.set_default_timeout(STEP_TIMEOUT * 1000)
                run.peer_lab = peer_jupyter_lab(page, self.workdir)
            finally:
                close_quietly(context)
            if not mlflow.skipped:
                run.peer_mlflow = mlflow.measure(self.body)
        return run

    def login_to_notebook(self, page, run):
        page.goto(f"{self.hub.url}hub/login")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", self.password)
        start = time.perf_counter()
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url("**/hub/spawn**")
        run.login = time.perf_counter() - start
        page.check("input[name=profile][value=python]")
        start = time.perf_counter()
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(f"**/user/{USER}/lab**")
        run.spawn = time.perf_counter() - start
        start = time.perf_counter()
        item = page.locator(".jp-DirListing-item", has_text=NOTEBOOK)
        item.wait_for(timeout=STEP_TIMEOUT * 1000)
        run.page = time.perf_counter() - start
        run.dialog = open_notebook(page)
        run.lab = time.perf_counter() - start
        run.kernel = run.lab - run.page

    def publish_twice(self, page, index, run):
        name = f"iris-{index}"
        run_all_cells(page)
        page.locator(".mlhub-publish-panel").nth(1).locator(".mlhub-publish-button").wait_for()

        _, run.publish, _, snippets = publish(page, 0, name)
        key = next(t for t in re.split(r"[\s\"']+", snippets) if t.startswith("mlhk_"))
        self.check_predict(name, key)
        model_url = f"{self.hub.url}models/{USER}/{name}/"
        old = requests.get(model_url + "readyz", timeout=30).json()["version"]

        watch = VersionWatch(model_url + "readyz", old)
        watch.start()
        try:
            clicked, run.republish, endpoint, _ = publish(page, 1, name)
        finally:
            watch.stopping.set()
            watch.join()
        shown = re.search(r"sha256:[0-9a-f]+", endpoint).group()
        if watch.new is None or not watch.new.startswith(shown) or watch.new == old:
            raise RuntimeError(f"{name} serves {watch.new}, not the re-published {shown}")
        run.republish_serving = watch.switched - clicked
        self.check_predict(name, key)
        self.delete_model(name)

    def check_predict(self, name, key):
        """Not timed: the endpoint answers a predict with the key the panel showed."""
        url = f"{self.hub.url}models/{USER}/{name}/v1/predict"
        reply = requests.post(
            url,
            json={"instances": self.body},
            headers={"Authorization": f"token {key}"},
            timeout=30,
        )
        if reply.status_code != 200 or len(reply.json()["predictions"]) != len(self.body):
            raise RuntimeError(f"predict on {url} answered {reply.status_code}: {reply.text}")

    def delete_model(self, name):
        """Each run starts with no model serving, so runs do not slow each other down."""
        url = f"{self.hub.url}services/mlhub-publisher/api/models/{USER}/{name}"
        headers = {"Authorization": f"token {self.publisher_token}"}
        requests.delete(url, headers=headers, timeout=60).raise_for_status()

    def stop_server(self):
        """Stop the user's server through the hub's REST API, so the next run spawns anew."""
        self.hub.hub_api(self.session, "DELETE", f"/users/{USER}/server").raise_for_status()

        def stopped():
            return not self.hub.hub_api(self.session, "GET", f"/users/{USER}").json()["servers"]

        poll(stopped, f"{USER}'s server to stop", interval=0.2)


# -------------------------------------------------------------------------------- output


def report(args, runs, mlflow, versions):
    command = shlex.join([".venv/bin/python", "bench/notebook_times.py", *sys.argv[1:]])
    print()
    print(f"mlhub notebook timings, {datetime.datetime.now():%Y-%m-%d %H:%M}, {len(runs)} runs")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; {versions}")
    print()
    print(
        table(
            "(a) login -> notebook ready [s]",
            [
                ("total", lambda r: r.notebook),
                ("login", lambda r: r.login),
                ("spawn", lambda r: r.spawn),
                ("lab+kernel", lambda r: r.lab),
                ("(page", lambda r: r.page),
                ("kernel)", lambda r: r.kernel),
                ("dialog", lambda r: "yes" if r.dialog else "no"),
                ("peer: jupyter lab", lambda r: r.peer_lab),
            ],
            runs,
        )
    )
    print()
    print(
        table(
            "(b) Publish click -> endpoint ready [s]",
            [
                ("publish", lambda r: r.publish),
                ("republish serving", lambda r: r.republish_serving),
                ("republish ready", lambda r: r.republish),
                ("peer: mlflow serve", lambda r: r.peer_mlflow),
            ],
            runs,
        )
    )
    print()
    print(
        textwrap.dedent(
            """\
            total = login (form submitted -> spawn page) + spawn (spawn form submitted ->
              JupyterLab's URL) + lab+kernel (JupyterLab loads, notebook double-clicked in the
              file browser, kernel idle) = page (JupyterLab's URL -> the file browser lists
              the notebook) + kernel (double-click -> kernel idle). dialog: JupyterLab asked
              "Select Kernel" (clicked).
            peer: jupyter lab = `jupyter lab` process start -> same notebook, kernel idle.
            publish = click -> the panel shows the endpoint (bundle, upload, load check, uWSGI
              start, readiness, proxy route, API key); a predict with that key then succeeds.
            republish serving = click -> the endpoint answers with the new version;
              republish ready = click -> the panel shows it (adds the old version's drain,
              LocalDeployer.drain_seconds).
            peer: mlflow serve = `mlflow models serve -w 2` start -> first 200 from
              /invocations (the model already saved; no auth, no keys)."""
        )
    )
    if args.no_peers:
        print("peers skipped (--no-peers)")
    elif mlflow.skipped:
        print(f"mlflow peer skipped: {mlflow.skipped}")
    else:
        print(f"mlflow {mlflow.version} from the throwaway venv {mlflow.venv}")
    print(f"\nreproduce: cd {ROOT} && {command}")


def versions_line(browser, mlflow):
    parts = [f"jupyterhub {jupyterhub.__version__}", f"jupyterlab {jupyterlab.__version__}"]
    parts.append(f"chromium {browser.version}")
    if mlflow.version:
        parts.append(f"mlflow {mlflow.version}")
    return ", ".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs to measure (default 5)")
    parser.add_argument(
        "--hub-config",
        default="",
        metavar="PYTHON",
        help="more lines for the hub's mlhub config file, to compare settings, e.g. "
        "'c.Spawner.http_timeout = 60'",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the jupyter lab and mlflow peers"
    )
    parser.add_argument(
        "--mlflow-venv",
        default="/tmp/mlhub-bench-mlflow",
        help="throwaway venv for mlflow, created if missing and reused after (default %(default)s)",
    )
    parser.add_argument(
        "--install-timeout",
        type=float,
        default=600,
        help="seconds installing mlflow may take before its peer is skipped (default 600)",
    )
    args = parser.parse_args(argv)
    executable = shutil.which("chromium")
    if executable is None:
        sys.exit("Debian's chromium is missing: run scripts/system-deps")
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    runs = []
    try:
        with contextlib.ExitStack() as stack:
            # registered first, so it runs last: whatever is still running below us goes
            stack.callback(kill_descendants)
            bench = Bench(args, stack)
            mlflow = MlflowPeer(args.mlflow_venv, bench.workdir, args.install_timeout)
            if not args.no_peers:
                mlflow.prepare()
                if mlflow.skipped:
                    print(f"mlflow peer skipped: {mlflow.skipped}")
            print("starting mlhub up ...")
            bench.start_hub()
            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            stack.callback(close_quietly, browser)
            for index in range(1, args.runs + 1):
                run = bench.run_once(index, browser, mlflow)
                runs.append(run)
                print(
                    f"run {index}: login->notebook {run.notebook:.2f} s, publish "
                    f"{run.publish:.2f} s, republish {run.republish:.2f} s",
                    flush=True,
                )
            report(args, runs, mlflow, versions_line(browser, mlflow))
    except (KeyboardInterrupt, PlaywrightError):
        # a Playwright error is how a step ends when Ctrl-C took the browser down first
        if not INTERRUPTED.is_set():
            raise
        print("interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    return 0


def kill_descendants():
    """Last resort on any exit: SIGKILL every process still below this one (a browser or
    server a failed step left behind). ``mlhub up``'s own tree is handled by EmbeddedHub."""
    for pid in tree(os.getpid()):
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
