"""``mlhub up``: the embedded mode as one foreground command.

It prepares the data directory (secrets, the admin account), runs JupyterHub as a child process
(which starts the proxy, the publisher service and the users' servers), waits until the hub
answers through the proxy, says where to log in, and waits. Ctrl-C or SIGTERM stops JupyterHub,
which stops everything it started; ``mlhub up`` then makes sure of it: it is a *child subreaper*
(``PR_SET_CHILD_SUBREAPER``), so any process of the tree that outlived its parent (a kernel, a
uWSGI worker) is re-parented to it instead of to init, and is stopped before ``mlhub up`` exits.
All state lives in the data directory, so the next ``mlhub up`` finds users, workspaces and
published models where they were.

Run as root it is multi-user mode (``MlhubSettings.user_mode``): every user's code runs as their
own system account and the data directory is readable by root alone (``mlhub.datadir``); the
hub and everything it starts run with umask 077, so nothing is readable by others by accident.
Run as another account it is single-user mode, and the banner says so.
"""

import contextlib
import ctypes
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mlhub import datadir, instances
from mlhub.accounts import AccountStore, write_secret_file
from mlhub.errors import Conflict, MlhubError
from mlhub.profiles import load_profiles
from mlhub.settings import read_config_file

JUPYTERHUB_CONFIG = str(Path(__file__).resolve().parent / "jupyterhub_config.py")
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_GRACE_SECONDS = 10


def ensure_secret(path, nbytes=32):
    """The hex secret in ``path``, generated (mode 0600) on first use."""
    if not os.path.exists(path):
        write_secret_file(path, secrets.token_hex(nbytes))
    with open(path) as f:
        return f.read().strip()


PRIVATE_UMASK = 0o077


def prepare(settings):
    """Create the data directory layout, the proxy token and the admin account; set who may
    read what (``mlhub.datadir``) and, in multi-user mode, give every account its system
    account and workspace (taking over a data directory of single-user mode or an earlier
    version: nothing is moved, ownership and modes are fixed).

    Returns the admin password if the admin account was created now, else None.
    """
    os.makedirs(settings.path("logs"), exist_ok=True)
    os.makedirs(settings.workspaces_dir, exist_ok=True)
    ensure_secret(settings.path("proxy_token"))
    store = AccountStore(settings.accounts_location())
    password = store.ensure_admin(settings.admin_user)
    if password:
        write_secret_file(settings.path("admin_password"), password + "\n")
    datadir.secure(settings, settings.multi_user)
    users = settings.system_users()
    if users is not None:
        for account in store.list():
            users.ensure(account.name)
        datadir.check_shareable(settings)
    return password


def _prctl():
    return ctypes.CDLL(None, use_errno=True).prctl


def _process_table():
    """{pid: (ppid, command line)} of every process we can see."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the ppid follows the last ")"
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry)] = (ppid, cmdline)
    return table


def descendants(pid):
    """{pid: command line} of every living descendant of ``pid`` (zombies excluded)."""
    table = _process_table()
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, cmdline) in table.items():
            if ppid == parent and child not in found:
                if cmdline:  # zombies have an empty command line; reaping handles them
                    found[child] = cmdline
                frontier.append(child)
    return found


def _reap():
    """Collect exited children (we are their subreaper), without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_leftovers(out=sys.stderr):
    """Stop every process still below us: SIGTERM, a grace period, then SIGKILL."""
    leftovers = descendants(os.getpid())
    if not leftovers:
        return {}
    for pid, cmdline in leftovers.items():
        _say(out, f"mlhub: stopping leftover process {pid}: {cmdline[:120]}")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while descendants(os.getpid()) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.1)
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while descendants(os.getpid()):
        _reap()
        time.sleep(0.05)
    _reap()
    return leftovers


def _stop_stale_proxy(settings):
    """A proxy from a run whose hub was killed (-9) still holds the ports: stop it, as
    JupyterHub would, since this data directory's pid file names it."""
    pid_file = settings.path("jupyterhub-proxy.pid")
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except (OSError, ValueError):
        return
    if "configurable-http-proxy" in cmdline:
        print(f"mlhub: stopping the proxy left over from an earlier run (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)


def check_ports(settings):
    """Fail early, naming the setting to change, if a port mlhub needs is taken."""
    ports = [
        (settings.ip, settings.port, "port (--port, MLHUB_PORT)"),
        (settings.internal_ip, settings.hub_port, "hub_port (MLHUB_HUB_PORT)"),
        ("127.0.0.1", settings.proxy_api_port, "proxy_api_port (MLHUB_PROXY_API_PORT)"),
        (settings.internal_ip, settings.publisher_port, "publisher_port (MLHUB_PUBLISHER_PORT)"),
    ]
    for host, port, setting in ports:
        with socket.socket() as s:
            # as the servers themselves do: connections in TIME_WAIT do not block a restart
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                raise Conflict(
                    f"{host}:{port} is not free ({e.strerror}); "
                    f"set MlhubSettings.{setting} to another port"
                ) from None


def _lock_data_dir(settings):
    """One ``mlhub up`` per data directory: two hubs on one SQLite file would corrupt it."""
    lock = open(settings.path("mlhub-up.lock"), "a+")  # noqa: SIM115 (held while we run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        raise Conflict(
            f"another 'mlhub up' (pid {lock.read().strip() or '?'}) is using {settings.data_dir}"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _hub_answers(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _mode_lines(settings):
    """Which user mode this is, and a warning when accounts share one system account."""
    if settings.mode != "embedded":
        return []
    if settings.multi_user:
        prefix = settings.system_user_prefix
        return [f"  mode:         multi-user (each user runs as their own account, {prefix}NAME)"]
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    lines = [f"  mode:         single-user (everything runs as {me}; for one person)"]
    accounts = AccountStore(settings.accounts_location()).list()
    if settings.shared_single_user or len(accounts) > 1:
        lines += [
            "",
            "  WARNING: single-user mode with shared accounts "
            f"({', '.join(a.name for a in accounts)}):",
            f"  everyone's notebooks and models run as {me} and can read and change each",
            "  other's files, models and this hub's secrets. Run mlhub as root for multi-user",
            "  mode (a system account per user).",
        ]
    return lines


def _login_lines(settings, new_password):
    """How to log in: the admin account, unless another authenticator is configured."""
    if settings.config_file:
        config = read_config_file(settings.config_file)
        configured = config.JupyterHub.get("authenticator_class")
        if isinstance(configured, type):
            configured = f"{configured.__module__}.{configured.__name__}"
        if configured and configured != "mlhub.authenticator.MlhubAuthenticator":
            return [f"  log in with:  {configured}"]
    lines = [f"  admin user:   {settings.admin_user}"]
    password_file = settings.path("admin_password")
    if new_password:
        lines.append(f"  password:     {new_password}   (also saved in {password_file})")
    elif os.path.exists(password_file):
        lines.append(f"  password:     in {password_file}")
    else:
        lines.append(f"  password:     set with 'mlhub users passwd {settings.admin_user}'")
    lines.append("  add users:    mlhub users add NAME [--group GROUP]")
    return lines


def _say(out, text):
    """Print, unless the terminal is gone (SIGHUP): stopping must not fail over a message."""
    with contextlib.suppress(OSError):
        print(text, file=out, flush=True)


def _tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def up(settings, out=sys.stdout):
    """Run the embedded hub until Ctrl-C/SIGTERM; return the exit code."""
    os.umask(PRIVATE_UMASK)
    try:
        settings.check_user_mode()
        load_profiles(settings.profiles_dir)
        os.makedirs(settings.data_dir, exist_ok=True)
        lock = _lock_data_dir(settings)
        settings.proxy_command()  # installed, or an error saying how to install it
        _stop_stale_proxy(settings)
        check_ports(settings)
        new_password = prepare(settings)
        forget = instances.record(settings)  # so every mlhub command finds this instance
    except MlhubError as e:
        print(f"mlhub: error: {e.message}", file=sys.stderr)
        return 2

    prctl = _prctl()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    log_path = settings.path("logs", "jupyterhub.log")
    env = dict(os.environ, MLHUB_DATA_DIR=settings.data_dir)
    if settings.config_file:
        env["MLHUB_CONFIG_FILE"] = settings.config_file
    with open(log_path, "ab") as log:
        hub = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", JUPYTERHUB_CONFIG],
            cwd=settings.data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # SIGTERM to the hub if mlhub up dies, so the hub never runs unsupervised
            preexec_fn=lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM),
        )

    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        if len(stopping) == 1:
            hub.send_signal(signal.SIGTERM)
            _say(out, "\nmlhub: stopping (Ctrl-C again to kill at once) ...")
            return
        for pid in descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    connect_host = settings.ip if settings.ip not in ("", "0.0.0.0", "::") else "127.0.0.1"
    api_url = f"http://{connect_host}:{settings.port}/hub/api"
    while hub.poll() is None and not stopping and not _hub_answers(api_url):
        time.sleep(0.2)
    if hub.poll() is None and not stopping:
        lines = [
            "",
            f"mlhub is running at {settings.public_url}",
            *_mode_lines(settings),
            *_login_lines(settings, new_password),
            f"  data:         {settings.data_dir}",
            f"  logs:         {log_path}",
            "Press Ctrl-C to stop.",
            "",
        ]
        _say(out, "\n".join(lines))

    code = hub.wait()
    stop_leftovers()
    forget()
    lock.close()
    if stopping:
        _say(out, "mlhub: stopped.")
        return 0
    print(f"mlhub: JupyterHub exited with code {code}; last lines of {log_path}:", file=sys.stderr)
    print(_tail(log_path), file=sys.stderr)
    return code or 1
