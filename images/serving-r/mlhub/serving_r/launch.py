"""Serve one R model bundle with N plumber processes behind nginx.

    python3 -m mlhub.serving_r.launch [--bundle DIR] [--port P] [--workers N] [--host H]

The serving-r image's entry point and the embedded mode's R serve command
(``LocalDeployer.serve_commands["r"]``) both run this, so a container and a local instance
have the same topology. Without arguments the settings come from the image's environment
(``MLHUB_BUNDLE``, ``MLHUB_PORT`` = 8080, ``MLHUB_WORKERS`` = 1, all addresses); the other
``MLHUB_*`` settings reach ``serve.R`` through the environment (README.md).

One R process answers one request at a time, so workers are processes: plumber i listens on a
free port of 127.0.0.1 and nginx (``mlhub.serving.frontend``) takes the public port and spreads
requests over them. nginx talks to plumber with one request per connection, so httpuv's Nagle
delay never applies, and to clients with keep-alive. Each plumber writes its counters to
``<run dir>/metrics`` and ``/metrics`` sums them (``runtime/metrics.R``).

Readiness: a plumber listens only once it has loaded the model (or knows why it cannot; then
its ``/readyz`` answers 503 with the reason), and nginx starts listening only after every
plumber listens, so the public ``/readyz`` answers 200 only when every process loaded the model.

Process contract (``LocalDeployer.serve_commands``): this process keeps its pid for the
instance's lifetime; SIGTERM stops every child (nginx finishes its requests first) and exits 0.
When a child exits on its own the others are stopped and this exits 1, so the instance is
replaced whole (by the orchestrator, or by the local deployer's supervisor) rather than serving
with fewer processes than it reports. Runtime files (nginx's configuration, pid and temp files,
the metrics) live in a per-instance directory, removed at exit (or, if this process was killed,
by the next launcher).

Without nginx (a machine serving embedded without ``nginx-light``) one worker is plumber
alone, exec'd in this process (same pid); more are refused with what to install.
"""

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from mlhub import __version__
from mlhub.serving import frontend
from mlhub.serving.settings import Settings, SettingsError

RSCRIPT = "Rscript"
NGINX_HINT = "install nginx where models are served (Debian/Ubuntu: `apt-get install nginx-light`)"
_SBIN = ("/usr/sbin", "/usr/local/sbin")  # where nginx is installed; not on every user's PATH
_PORT_TRIES = 3  # starts of one plumber on a fresh port after its port was taken
_POLL = 0.05  # seconds between checks that the plumber processes listen
RUN_PREFIX = "mlhub-serving-r-"  # + the launcher's pid: run dirs of killed launchers are found


def log(message):
    print(f"serving-r: {message}", file=sys.stderr, flush=True)


def find_nginx():
    """nginx's path, or None when it is not installed."""
    return shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))


def workers_refused(workers):
    """Why ``workers`` R processes cannot serve one model here (no nginx to spread requests over
    them), or None."""
    if workers > 1 and find_nginx() is None:
        return (
            f"{workers} workers of an R model are {workers} R processes behind nginx, which is "
            f"not installed here: {NGINX_HINT}, or serve the model with 1 worker"
        )
    return None


def plumber_argv(port, host):
    return [RSCRIPT, str(Path(__file__).with_name("serve.R")), "--port", str(port), "--host", host]


def listen_address(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def nginx_conf(settings, *, host, port, backends, run_dir, user=None):
    """nginx in front of the plumber processes on ``backends`` (ports of 127.0.0.1)."""
    timeout = settings.request_timeout
    location = [
        "proxy_pass http://backend;",
        "proxy_set_header Host $host;",
        f"proxy_read_timeout {timeout + 5}s;",
        f"proxy_send_timeout {timeout}s;",
        # a plumber that refuses the connection (being replaced) gets none of the requests
        "proxy_next_upstream error timeout;",
    ]
    return frontend.nginx_conf(
        settings,
        listen=listen_address(host, port),
        run_dir=run_dir,
        location=location,
        upstream=[f"127.0.0.1:{p}" for p in backends],
        user=user,
        writer="mlhub.serving_r.launch",
    )


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _taken(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def remove_stale_run_dirs(tmp=None):
    """Remove this user's run dirs whose launcher no longer runs (one killed with SIGKILL had
    no chance to remove its own)."""
    for path in Path(tmp or tempfile.gettempdir()).glob(f"{RUN_PREFIX}*-*"):
        pid = path.name.removeprefix(RUN_PREFIX).split("-", 1)[0]
        try:
            mine = path.stat().st_uid == os.geteuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _start_plumbers(supervisor, workers, env):
    """Start the plumber processes and wait until each listens; return their ports, or None if
    one exited first (or a stop came)."""
    ports = {}

    def start(i):
        ports[i] = frontend.free_port("127.0.0.1")
        supervisor.start(
            f"plumber-{i}", plumber_argv(ports[i], "127.0.0.1"), {**env, "MLHUB_WORKER_ID": str(i)}
        )

    for i in range(1, workers + 1):
        start(i)
    tries = dict.fromkeys(ports, 1)
    waiting = set(ports)
    while waiting and not supervisor.stopping:
        for i in sorted(waiting):
            child = supervisor.children[f"plumber-{i}"]
            if _listening(ports[i]):
                waiting.discard(i)
            elif child.poll() is not None:
                if _taken(ports[i]) and tries[i] < _PORT_TRIES:
                    log(f"plumber-{i}: port {ports[i]} was taken meanwhile; trying another")
                    tries[i] += 1
                    start(i)
                    continue
                log(f"plumber-{i} exited with {child.returncode} before it listened")
                return None
        time.sleep(_POLL)
    return None if supervisor.stopping else [ports[i] for i in sorted(ports)]


def serve(args, env, nginx):
    supervisor = frontend.Supervisor(log)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    remove_stale_run_dirs()
    run_dir = tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-")
    try:
        metrics = Path(run_dir, "metrics")
        metrics.mkdir()
        env = {**env, "MLHUB_METRICS_DIR": str(metrics)}
        backends = _start_plumbers(supervisor, args.workers, env)
        if backends is None:
            return supervisor.wait()
        conf = Path(run_dir, "nginx.conf")
        conf.write_text(
            nginx_conf(
                args.settings,
                host=args.host,
                port=args.port,
                backends=backends,
                run_dir=run_dir,
                # nginx started as root runs its workers as nobody, who cannot write run_dir
                user="root" if os.geteuid() == 0 else None,
            )
        )
        supervisor.start("nginx", frontend.nginx_argv(nginx, conf), env, signal.SIGQUIT)
        log(
            f"nginx on {listen_address(args.host, args.port)} -> {args.workers} plumber "
            f"process(es) serving {args.bundle}"
        )
        return supervisor.wait()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _workers(value):
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return int(value)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m mlhub.serving_r.launch",
        description="Serve one R model bundle with N plumber processes behind nginx.",
    )
    parser.add_argument(
        "--bundle", default=os.environ.get("MLHUB_BUNDLE") or "/var/lib/mlhub/bundle"
    )
    parser.add_argument("--port", type=int, default=os.environ.get("MLHUB_PORT") or "8080")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=os.environ.get("MLHUB_WORKERS") or "1",
        help="plumber processes (default: $MLHUB_WORKERS, else 1)",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address nginx listens on")
    args = parser.parse_args(argv)
    env = dict(
        os.environ,
        MLHUB_BUNDLE=args.bundle,
        MLHUB_WORKERS=str(args.workers),
        MLHUB_SERVER_VERSION=__version__,  # GET /v2 names it
    )
    try:
        args.settings = Settings.from_env(env)
    except SettingsError as e:
        log(f"cannot start: {e}")
        return 2
    if shutil.which(RSCRIPT) is None:
        log(f"cannot start: {RSCRIPT} is not installed (R: apt-get install r-base-core)")
        return 2
    nginx = find_nginx()
    if nginx is None:
        if reason := workers_refused(args.workers):
            log(f"cannot start: {reason}")
            return 2
        log("nginx is not installed: one plumber process serves alone")
        sys.stderr.flush()
        os.execvpe(RSCRIPT, plumber_argv(args.port, args.host), env)
    return serve(args, env, nginx)


if __name__ == "__main__":
    sys.exit(main())
