"""The serving-python image's entry point: nginx in front of uWSGI, one bundle, one container.

    python -m mlhub.serving container

nginx takes the public port (``MLHUB_PORT``, default 8080) and hands requests to uWSGI over a
unix socket (the uwsgi protocol: no second HTTP parser, no TCP port inside the container).
nginx holds slow clients and buffers bodies, so a uWSGI worker is busy only while it predicts;
it refuses a body over ``MLHUB_MAX_BODY_BYTES`` with the contract's JSON 413 before uWSGI sees
it, and answers a JSON 503 while uWSGI (re)starts. Workers, the body limit and the timeouts are
the runtime's own settings (``mlhub.serving.settings``), read from the environment.

The bundle is ``MLHUB_BUNDLE`` (default ``/var/lib/mlhub/bundle``, e.g. a read-only mount) or,
with ``MLHUB_BUNDLE_URL``, fetched at start by ``fetch.fetch_bundle`` (the Kubernetes init
container's fetch: ``Authorization: token $MLHUB_BUNDLE_TOKEN``, or the token in
``MLHUB_BUNDLE_TOKEN_FILE``), which must hash to ``MLHUB_MODEL_VERSION``. It unpacks beside the
bundle and renames into place, so a container killed mid-fetch never leaves a half bundle, and
a restarted container whose bundle is already there does not fetch again. Then this process
starts itself again without the token in its environment: the model's code runs as the same
user and could read ``/proc/1/environ``. ``/readyz`` answers 200 only
once the model is loaded: before that nginx is not listening yet, then uWSGI says 503.

This process stays PID 1: it forwards SIGTERM (nginx finishes its requests, uWSGI drains its
workers), reaps orphans, and exits when either server dies, so the container restarts as a
whole instead of running half a server.
"""

import os
import shutil
import signal
import sys
from pathlib import Path

from mlhub.errors import MlhubError

from . import frontend
from .fetch import fetch_bundle
from .launch import process_env, uwsgi_argv
from .settings import Settings, SettingsError, _int

RUN_DIR = "/tmp/mlhub-serving"
# Secrets the servers must not inherit: uWSGI workers run the model's (user's) code.
_SECRETS = ("MLHUB_BUNDLE_TOKEN", "MLHUB_BUNDLE_TOKEN_FILE")


def log(message):
    print(f"mlhub-serving: {message}", file=sys.stderr, flush=True)


def nginx_conf(settings, *, port, socket, run_dir):
    """nginx's whole configuration for one serving container: uWSGI's protocol on ``socket``."""
    timeout = settings.request_timeout
    location = [
        "include /etc/nginx/uwsgi_params;",
        f"uwsgi_pass unix:{socket};",
        f"uwsgi_read_timeout {timeout + 5}s;",
        f"uwsgi_send_timeout {timeout}s;",
    ]
    return frontend.nginx_conf(
        settings, listen=port, run_dir=run_dir, location=location, writer="mlhub.serving.container"
    )


def _token(env):
    if env.get("MLHUB_BUNDLE_TOKEN_FILE"):
        return Path(env["MLHUB_BUNDLE_TOKEN_FILE"]).read_text().strip()
    return env.get("MLHUB_BUNDLE_TOKEN", "")


def main(argv=None):
    env = dict(os.environ)
    try:
        port = _int(env, "MLHUB_PORT", 8080)
        bundle = env.get("MLHUB_BUNDLE") or "/var/lib/mlhub/bundle"
        env["MLHUB_BUNDLE"] = bundle
        settings = Settings.from_env(env)
        if env.get("MLHUB_BUNDLE_URL"):
            url, version = env["MLHUB_BUNDLE_URL"], env.get("MLHUB_MODEL_VERSION", "")
            if not version.startswith("sha256:"):
                raise MlhubError(
                    "MLHUB_BUNDLE_URL needs MLHUB_MODEL_VERSION=sha256:... (the version to "
                    "serve): a container serves only the version it was started for"
                )
            log(f"fetching {version} from {url}")
            fetch_bundle(url, version, bundle, _token(env), timeout=settings.request_timeout)
            log(f"bundle {version} is in {bundle}")
        elif not Path(bundle, "mlhub.yaml").is_file():
            raise MlhubError(
                f"no model bundle at {bundle}: mount one there (or set MLHUB_BUNDLE), "
                "or set MLHUB_BUNDLE_URL (and MLHUB_BUNDLE_TOKEN) to fetch it at start"
            )
    except (MlhubError, SettingsError, OSError) as e:
        log(f"cannot start: {getattr(e, 'message', e)}")
        return 2
    if any(key in env for key in _SECRETS):
        # Start again without the token: the model's code runs as this same user and could
        # read this process's initial environment in /proc/1/environ.
        clean = {k: v for k, v in env.items() if k not in _SECRETS and k != "MLHUB_BUNDLE_URL"}
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "mlhub.serving", "container"], clean)
    shutil.rmtree(RUN_DIR, ignore_errors=True)  # a killed container's socket and pid file
    os.makedirs(RUN_DIR)
    socket = f"{RUN_DIR}/uwsgi.sock"
    conf = Path(RUN_DIR, "nginx.conf")
    conf.write_text(nginx_conf(settings, port=port, socket=socket, run_dir=RUN_DIR))

    supervisor = frontend.Supervisor(log)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    argv = uwsgi_argv(bundle, socket=socket, env=env)
    supervisor.start("uwsgi", argv, process_env(argv, env))
    supervisor.start("nginx", frontend.nginx_argv("nginx", conf), env, signal.SIGQUIT)
    log(f"serving {bundle} on port {port} with {settings.workers} workers")
    return supervisor.wait()
