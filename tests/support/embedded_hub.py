"""The one test harness for a running hub: a real ``mlhub up`` (hub/mlhub/up.py, the real
jupyterhub_config.py, MlhubAuthenticator) in a temp data dir on free ports, so tests exercise the
configuration users run, not a copy of it. The component tests (hub, publisher) and the browser
tests use it.

``EmbeddedHub(dir, config=...)`` writes an mlhub config file with free ports (plus ``config``:
more lines for that file, e.g. ``c.LocalDeployer.drain_seconds = 1``, which the hub and the
publisher both read). ``start()`` runs ``mlhub up --data-dir ... --config ...`` in its own session
and waits for its "running" banner and for the publisher to answer; ``stop()`` sends SIGINT
(Ctrl-C) and waits; ``start()`` again restarts on the same ports and data. People come from
``mlhub users add``, sessions from the real login form, tokens from the hub REST API as on
/hub/token. ``kill()`` is the safety net for failed tests: it kills every process the instance
started, found from the process tree recorded while it ran and the publisher's run-state files.

``running_hub(dir, config, users)`` is the fixtures' way to have one: started, with accounts
and tokens and alice's publisher client, stopped (then killed) at the end.

The module also holds the process helpers the tests share (``free_port``, ``process_table``,
``tree``, ``alive``, ``uid_of``, ``wait_for``).

As root (CI) the hub runs multi-user mode: ``mlhub users add`` makes a system account per
person (``mlhub-alice``), and ``kill()`` deletes the ones made for this hub.
"""

import contextlib
import fcntl
import json
import os
import pwd
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

from mlhub.deployers.processes import ServingInstance
from mlhub.publisher.client import PublisherClient
from mlhub.settings import PUBLISHER_SERVICE

VENV_BIN = Path(sys.executable).parent
MLHUB = str(VENV_BIN / "mlhub")


def _ephemeral_range():
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A port that is free now and stays out of the kernel's way until a server binds it.

    A test picks a port, writes it into a config and binds it seconds later. A port from
    ``bind(0)`` lies in the ephemeral range, where every kernel, ZMQ socket or client the
    machine opens in between may take it (seen: the publisher's port taken by a socket that
    never answered HTTP). Ports below that range are only handed out on request.
    """
    low, _ = _ephemeral_range()
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def process_table():
    """{pid: (ppid, cmdline)} of every live (non-zombie) process."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
            state, ppid = tail.split()[:2]
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if state != "Z":
            table[int(stat.parent.name)] = (int(ppid), cmdline.strip())
    return table


def tree(pid):
    """{pid: cmdline} of ``pid`` and all its live descendants."""
    table = process_table()
    found = {pid: table[pid][1]} if pid in table else {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, cmdline) in table.items():
            if ppid == parent and child not in found:
                found[child] = cmdline
                frontier.append(child)
    return found


def alive(pid):
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def uid_of(pid):
    """The real uid of process ``pid`` (``/proc/<pid>/status``)."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def wait_for(check, what, timeout=120.0, interval=0.2):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` on timeout.

    A failed request or unreadable answer counts as "not yet" (a service still starting or
    restarting refuses connections); the last such error is in the failure message. The timeout
    only guards against hangs: no test asserts on how long anything took.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (requests.RequestException, OSError, ValueError, KeyError) as exc:
            result, last = None, exc
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def passable(path):
    """Let other accounts pass through (not list) every folder on the way to ``path``.

    As root the hub runs multi-user mode, where each user's server runs as their own account
    and must reach its workspace in the data directory (``mlhub up`` refuses to start
    otherwise, naming the folder); pytest makes its temporary folders 0700."""
    for folder in [*reversed(Path(path).resolve().parents), Path(path).resolve()]:
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)


class HubSite:
    """A hub as its users' HTTP clients meet it at ``url`` (its public URL, through the
    proxy): the login form, tokens made as on /hub/token, the REST API with a session."""

    def __init__(self, url):
        self.url = url

    def session(self):
        """A new HTTP client session for this site."""
        return requests.Session()

    def login(self, name, password):
        """A requests session logged in through the hub's login form (with its _xsrf)."""
        session = self.session()
        session.get(self.url + "hub/login", timeout=30).raise_for_status()
        session.xsrf = session.cookies.get("_xsrf", path="/hub/")
        r = session.post(
            self.url + "hub/login",
            data={"username": name, "password": password, "_xsrf": session.xsrf},
            timeout=60,
        )
        session.login_response = r
        # a login starts a new session, with a new XSRF token
        session.xsrf = session.cookies.get("_xsrf", path="/hub/")
        return session

    def token(self, user, password, scopes=None):
        """A new hub API token of ``user``, made as on /hub/token: logged in through the form,
        then ``POST /hub/api/users/<user>/tokens`` with that session. Without ``scopes`` it
        carries all of the user's permissions."""
        body = {"note": "test"} if scopes is None else {"note": "test", "scopes": scopes}
        reply = self.hub_api(self.login(user, password), "POST", f"/users/{user}/tokens", json=body)
        reply.raise_for_status()
        return reply.json()["token"]

    def hub_api(self, session, method, path, **kwargs):
        headers = {"X-XSRFToken": session.xsrf}
        return session.request(
            method, f"{self.url}hub/api{path}", headers=headers, timeout=60, **kwargs
        )


class EmbeddedHub(HubSite):
    def __init__(self, dir, profiles_dir=None, config="", run_as=None):
        self.dir = Path(dir)
        passable(self.dir)
        # run_as: the account that runs mlhub (not root: single-user mode, as on a laptop)
        self.run_as = run_as
        self.data_dir = self.dir / "data"
        self.port, self.hub_port = free_port(), free_port()
        self.proxy_api_port, self.publisher_port = free_port(), free_port()
        super().__init__(f"http://127.0.0.1:{self.port}/")
        self.publisher_url = f"{self.url}services/{PUBLISHER_SERVICE}/"
        self.config_file = self.dir / "mlhub_config.py"
        lines = f"""\
            c.MlhubSettings.port = {self.port}
            c.MlhubSettings.hub_port = {self.hub_port}
            c.MlhubSettings.proxy_api_port = {self.proxy_api_port}
            c.MlhubSettings.publisher_port = {self.publisher_port}
        """
        if profiles_dir:
            lines += f"    c.MlhubSettings.profiles_dir = {str(profiles_dir)!r}\n"
        self.config_file.write_text(textwrap.dedent(lines) + textwrap.dedent(config))
        self.proc = None
        self.output_file = None
        self.seen = {}  # every process seen in the instance's tree, for kill()

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self, *args):
        """``mlhub ARGS`` on this hub's data and config, as ``run_as`` if given."""
        cmd = [MLHUB, *args, "--data-dir", str(self.data_dir), "--config", str(self.config_file)]
        # its own registry of running instances (mlhub.instances): not the machine's
        runtime = f"XDG_RUNTIME_DIR={self.dir / 'run'}"
        if self.run_as is None:
            return ["env", runtime, *cmd]
        # setpriv execs (one pid, so signals reach mlhub up itself), unlike runuser and su
        gid = pwd.getpwnam(self.run_as).pw_gid
        user = f"--reuid={self.run_as}", f"--regid={gid}", "--init-groups"
        return ["setpriv", *user, "env", f"HOME={self.dir}", runtime, *cmd]

    def start(self):
        """Run ``mlhub up``; return its banner (everything it printed until "Press Ctrl-C").

        It returns once the publisher answers too: the hub prints the banner as soon as its own
        API answers, possibly before its managed service does.
        """
        remove_stale_accounts(self.data_dir)
        self.output_file = self.dir / f"up-{time.monotonic_ns()}.out"
        with open(self.output_file, "wb") as out:
            self.proc = subprocess.Popen(
                self.command("up"),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

        def banner():
            self._check_running()
            return "Press Ctrl-C to stop." in self.output and self.output

        text = wait_for(banner, "the mlhub up banner")
        wait_for(self.publisher_up, "the publisher")
        self.remember()
        return text

    def _check_running(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"mlhub up exited {self.proc.returncode}:\n{self.output}")

    def publisher_up(self):
        """Whether the publisher answers through the proxy (fails at once if mlhub up exited)."""
        self._check_running()
        return requests.get(self.publisher_url + "api/health", timeout=5).status_code == 200

    def publisher_pid(self):
        """The pid of the publisher the hub runs now (None while it runs none)."""
        for pid, cmd in tree(self.proc.pid).items():
            if "-m mlhub.publisher" in cmd:
                return pid
        return None

    def kill_publisher(self):
        """SIGKILL the publisher and wait until it is gone; return its pid (for
        ``wait_publisher_restarted``)."""
        publisher = self.publisher_pid()
        os.kill(publisher, signal.SIGKILL)
        wait_for(lambda: not alive(publisher), "the publisher to die")
        return publisher

    def wait_publisher_restarted(self, old):
        """Wait until JupyterHub restarted its managed publisher after ``old`` died, and the new
        one answers."""
        wait_for(
            lambda: self.publisher_pid() not in (None, old) and self.publisher_up(),
            "the hub to restart the publisher",
            timeout=240,
        )

    @property
    def output(self):
        return self.output_file.read_text(errors="replace") if self.output_file else ""

    def remember(self):
        """Record the current process tree (what kill() and the no-leftover checks use)."""
        if self.proc is not None:
            self.seen.update(tree(self.proc.pid))
        return dict(self.seen)

    def stop(self, sig=signal.SIGINT):
        """Ctrl-C ``mlhub up`` and wait for it; return its exit code."""
        self.remember()
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=180)

    def alive(self):
        """{pid: cmdline} of recorded processes still running (same pid and command line)."""
        table = process_table()
        return {pid: cmd for pid, cmd in self.seen.items() if pid in table and table[pid][1] == cmd}

    def kill(self):
        """SIGKILL whatever this instance started that still runs.

        That is its recorded process tree, and the model processes the publisher's run-state
        files name: those run in sessions of their own, so one started after the last
        ``remember()`` would outlive an ``mlhub up`` that died.
        """
        if self.proc is not None and self.proc.poll() is None:
            self.remember()
        for pid in set(self.alive()) | set(self.model_processes()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.wait()
        self.remove_accounts()

    def remove_accounts(self):
        """Delete the system accounts multi-user mode made for this hub (their home is in its
        data directory), so the next hub's alice is a new account, as on a new machine."""
        for entry in pwd.getpwall():
            if entry.pw_dir.startswith(f"{self.data_dir}/"):
                subprocess.run(["userdel", entry.pw_name], capture_output=True, check=False)

    def model_processes(self):
        """Pids of the serving processes the run-state files name, still running (matched by
        process group and bundle directory, as the deployer does, so never a recycled pid)."""
        pids = []
        for path in self.data_dir.glob("run/*/*.json"):
            state = json.loads(path.read_text())
            for instance in filter(None, [state.get("live"), *state.get("others", [])]):
                pids.extend(ServingInstance.from_dict(instance).leftovers())
        return pids

    # -- people ------------------------------------------------------------------------------

    def admin_password(self):
        return (self.data_dir / "admin_password").read_text().strip()

    def add_user(self, name, *groups):
        """``mlhub users add``; returns the generated password."""
        args = ["users", "add", name, *[a for g in groups for a in ("--group", g)]]
        out = subprocess.run(self.command(*args), capture_output=True, text=True, check=True)
        return re.search(r"password: (\S+)", out.stdout).group(1)

    def users(self, *args):
        return subprocess.run(self.command("users", *args), capture_output=True, text=True)

    def workspace(self, user):
        return self.data_dir / "workspaces" / user

    def wait_ready(self, session, user):
        """Wait for ``user``'s server; fail at once, with the hub's log, if the spawn failed.

        The wait is as long as the hub's own spawn timeouts (start + http, 180 s), so a slow
        machine fails the spawn in the hub, where the log says why, not in the test.
        """

        def ready():
            model = self.hub_api(session, "GET", f"/users/{user}").json()
            server = model["servers"].get("")
            if server is None and model.get("pending") is None:
                tail = "\n".join(self.output.splitlines()[-40:])
                raise AssertionError(f"{user}'s server failed to start; the hub said:\n{tail}")
            return server if server and server["ready"] else None

        return wait_for(ready, f"{user}'s server to be ready", timeout=200)

    def server_pid(self, user):
        """The pid of ``user``'s notebook server (``python -m mlhub.extension.singleuser``, a
        descendant of mlhub up)."""
        for pid, cmd in tree(self.proc.pid).items():
            if "mlhub.extension.singleuser" not in cmd:
                continue
            if self._environ(pid).get("JUPYTERHUB_USER") == user:
                return pid
        return None

    @staticmethod
    def _environ(pid):
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return {}
        return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)

    def server_env(self, user):
        return self._environ(self.server_pid(user))


def remove_stale_accounts(data_dir):
    """Delete the system accounts the test hubs of an earlier pytest run left (a run killed
    before its hubs' ``kill()``: a CI timeout, a session's end), and stop their processes.

    This run's hubs make the same names (``mlhub-alice``), and ``mlhub up`` rightly refuses an
    account whose home is another hub's data directory. Touched are only accounts mlhub made
    (comment ``mlhub <name>``) whose home is in an earlier run's folder of pytest's temporary
    root (not in the run ``data_dir`` is in) and whose hub is not running (its
    ``mlhub-up.lock`` is free): never a hub outside the test suite, nor one of a run going on.
    """
    run = next((p for p in data_dir.parents if p.parent.name.startswith("pytest-of-")), None)
    if os.geteuid() != 0 or run is None:
        return
    for entry in pwd.getpwall():
        home = Path(entry.pw_dir)
        if not entry.pw_gecos.startswith("mlhub ") or entry.pw_uid == 0:
            continue
        if run.parent not in home.parents or run in home.parents or _hub_running(home):
            continue
        subprocess.run(["pkill", "-KILL", "-U", str(entry.pw_uid)], check=False)
        subprocess.run(["userdel", entry.pw_name], capture_output=True, check=False)


def _hub_running(workspace):
    """Whether the ``mlhub up`` of the data directory holding ``workspace`` holds its lock."""
    try:
        lock = open(workspace.parent.parent / "mlhub-up.lock")  # noqa: SIM115 (closed below)
    except OSError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        return False


@contextlib.contextmanager
def running_hub(dir, config="", users=("alice",)):
    """A started ``EmbeddedHub`` with the accounts ``users`` (``mlhub users add``; passwords in
    ``hub.passwords``, a token of each as ``hub.<name>``) and the first one's (alice's)
    ``PublisherClient`` as ``hub.client``. At the end it is stopped with Ctrl-C, then anything
    left is killed (also when starting it failed)."""
    hub = EmbeddedHub(dir, config=config)
    try:
        hub.start()
        hub.passwords = {name: hub.add_user(name) for name in users}
        for name in users:
            setattr(hub, name, hub.token(name, hub.passwords[name]))
        hub.client = PublisherClient(url=hub.url, token=getattr(hub, users[0]), poll_interval=0.2)
        yield hub
        hub.stop()
    finally:
        hub.kill()


# Small limits and short waits, so the tests can reach them in seconds.
PUBLISHER_CONFIG = """
c.PublisherApp.max_upload_bytes = 1_000_000
c.PublisherApp.default_workers = 1
c.LocalDeployer.drain_seconds = 1
c.LocalDeployer.supervise_interval = 0.5
c.LocalDeployer.route_check_interval = 2
"""
