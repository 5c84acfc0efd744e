"""Build the uWSGI command line that serves one bundle, and exec it.

``uwsgi_argv`` is the one place uWSGI options are chosen; the local deployer calls it (or runs
``python -m mlhub.serving``, which execs the same argv so its pid becomes the uWSGI master).
Every resolved setting is passed to uWSGI as ``--env``, so the argv alone says how the
instance is configured (useful when a restarted publisher re-adopts running instances).

Why these options:

- ``--http`` + ``--http-keepalive`` + ``--http-auto-chunked``: uWSGI's HTTP router keeps client
  connections open (without keepalive it closes every one) and hands each request to a free
  worker, so one busy worker never holds a connection hostage.
- ``--master``, ``--need-app``, ``--die-on-term`` and ``--hook-master-start "unix_signal:15
  gracefully_kill_them_all"``: SIGTERM stops accepting, lets in-flight requests finish (up to
  ``--worker-reload-mercy`` = the request timeout) and exits; SIGTERM is what Kubernetes and
  the local deployer send.
- ``--harakiri``: a request running longer than ``MLHUB_REQUEST_TIMEOUT`` kills its worker
  (the master starts a new one).
- ``--sharedarea``: the memory behind ``/metrics`` (see metrics.py).
- ``--disable-logging`` + ``--log-5xx``: no per-request access log (it costs 10-25% of
  throughput), but every server error is logged. ``MLHUB_LOG_REQUESTS=on`` restores it.
- ``--lazy-apps`` only for flavors whose loading starts OpenMP threads (see wsgi.py).
- ``--threads`` when ``MLHUB_THREADS`` > 1 (the default with ``MLHUB_BATCHING=on``): a worker
  holds that many requests at once, which is what lets them share one model call
  (batching.py). Without batching one thread per process is fastest (no GIL sharing).
- The body size limit is enforced by the app from ``Content-Length`` before reading, so a
  too-large body gets a JSON 413 that says the limit, not a dropped connection.
"""

import os
import shutil
import sys
from pathlib import Path

from .metrics import area_pages
from .settings import Settings, SettingsError

WSGI_MODULE = "mlhub.serving.wsgi:application"
# Flavors whose libraries start OpenMP thread pools while loading: fork-unsafe with libgomp.
LAZY_FLAVORS = ("xgboost", "lightgbm")


def loads_per_worker(manifest):
    """Whether each worker must load the model itself (uWSGI ``--lazy-apps``): the flavors
    above, and whole MLflow models (``mlhub.bundle.mlflow_models``), which may wrap any library
    (an XGBoost model loaded before the fork hangs its workers' first predict)."""
    return manifest.get("flavor") in LAZY_FLAVORS or manifest.get("serialization") == "mlflow"


_PASSED_ENV = (
    "MLHUB_BUNDLE",
    "MLHUB_URL_PREFIX",
    "MLHUB_MODEL_OWNER",
    "MLHUB_MODEL_VERSION",
    "MLHUB_AUTH",
    "MLHUB_ACCESS_FILE",
    "JUPYTERHUB_API_URL",
    "MLHUB_MAX_BODY_BYTES",
    "MLHUB_REQUEST_TIMEOUT",
    "MLHUB_WORKERS",
    "MLHUB_HEADER_BUFFER_BYTES",
    "MLHUB_LAZY_APPS",
    "MLHUB_REQUEST_LOG",
    "MLHUB_REQUEST_LOG_RATE",
    "MLHUB_BATCHING",
    "MLHUB_BATCH_MAX_SIZE",
    "MLHUB_BATCH_MAX_WAIT_MS",
    "MLHUB_THREADS",
)


def find_uwsgi():
    """The uwsgi binary next to this Python (its venv) or, failing that, on ``PATH``."""
    beside = Path(sys.executable).parent / "uwsgi"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("uwsgi")
    if found:
        return found
    raise SettingsError(
        f"uwsgi is not installed next to {sys.executable} nor on PATH: pip install uwsgi"
    )


def _lazy(settings):
    if settings.lazy_apps != "auto":
        return settings.lazy_apps == "on"
    try:
        from mlhub.bundle import load_manifest

        return loads_per_worker(load_manifest(settings.bundle))
    except Exception:  # a broken bundle is reported by the app itself (/readyz)
        return False


def uwsgi_argv(
    bundle,
    port=None,
    *,
    workers=None,
    host="127.0.0.1",
    prefix=None,
    env=None,
    socket=None,
    in_process=False,
):
    """The uWSGI argv serving ``bundle`` over HTTP on ``host:port``, or, with ``socket``, over
    the uwsgi protocol on that unix socket (behind nginx, as in the serving-python image).

    ``workers`` and ``prefix`` override ``MLHUB_WORKERS`` / ``MLHUB_URL_PREFIX``; every other
    setting is read from ``env`` (default ``os.environ``). Raises ``SettingsError`` for a bad
    setting, so a misconfiguration fails here with a clear message, not inside uWSGI.
    ``in_process``: for ``pyuwsgi.run`` in this Python (the fork server, forkserver.py):
    argv[0] is only a name, and no ``--virtualenv``.
    """
    merged = dict(os.environ if env is None else env)
    merged["MLHUB_BUNDLE"] = str(Path(bundle).resolve())
    if workers is not None:
        merged["MLHUB_WORKERS"] = str(workers)
    if prefix is not None:
        merged["MLHUB_URL_PREFIX"] = prefix
    settings = Settings.from_env(merged)
    if socket is not None:
        # Only the front server (same user) may talk to the socket.
        listen = ["--socket", str(socket), "--chmod-socket=600"]  # its value is optional: "="
    elif port is not None and 0 < int(port) < 65536:
        listen = [
            "--http",
            f"{host}:{int(port)}",
            "--http-keepalive",
            "--http-auto-chunked",
            "--http-timeout",
            str(settings.request_timeout + 5),
        ]
    else:
        raise SettingsError(f"port {port} is not a TCP port (1-65535)")
    argv = [
        "uwsgi" if in_process else find_uwsgi(),
        "--strict",
        "--master",
        *listen,
        "--module",
        WSGI_MODULE,
        "--processes",
        str(settings.workers),
        "--need-app",
        "--die-on-term",
        "--hook-master-start",
        "unix_signal:15 gracefully_kill_them_all",
        "--worker-reload-mercy",
        str(settings.request_timeout),
        "--harakiri",
        str(settings.request_timeout),
        "--buffer-size",
        str(settings.header_buffer_bytes),
        "--sharedarea",
        str(area_pages(settings.workers)),
        "--enable-threads",
        "--thunder-lock",
        "--single-interpreter",
        "--ignore-sigpipe",
        "--ignore-write-errors",
        "--disable-write-exception",
    ]
    argv += ["--disable-logging", "--log-5xx"]  # the app logs outcomes (requestlog)
    if settings.threads > 1:
        argv += ["--threads", str(settings.threads)]
    if _lazy(settings):
        argv.append("--lazy-apps")
    if sys.prefix != sys.base_prefix and not in_process and not _is_script(argv[0]):
        # a uwsgi binary run from a venv: give its embedded Python the same one (pyuwsgi's
        # uwsgi command is that venv's Python already, and fails with --virtualenv)
        argv += ["--virtualenv", sys.prefix]
    for key in _PASSED_ENV:
        if merged.get(key):
            argv += ["--env", f"{key}={merged[key]}"]
    return argv


def _is_script(path):
    """Whether ``path`` is a script (pyuwsgi's ``uwsgi`` command) rather than a binary."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


def process_env(argv, base=None):
    """The environment to start ``argv`` (from ``uwsgi_argv``) with: ``base`` (default
    ``os.environ``) plus its ``--env`` settings. uWSGI sets those in the C environment while
    it reads its options; a uwsgi binary starts Python after that, but pyuwsgi's (uWSGI inside
    a Python that is running already) took its copy of the environment before, so the app
    would not see them."""
    env = dict(os.environ if base is None else base)
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "--env":
            key, _, val = value.partition("=")
            env[key] = val
    return env


def exec_uwsgi(argv):
    """Replace this process with uWSGI (its pid becomes the uWSGI master's)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, process_env(argv))
