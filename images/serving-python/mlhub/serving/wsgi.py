"""The uWSGI entry point (``--module mlhub.serving.wsgi``): settings, model, app, once.

By default uWSGI imports this module in the master and then forks the workers, so the model is
unpickled once and its memory is shared copy-on-write by every worker (N workers cost about
one model's memory, and a respawned worker starts instantly). The first prediction, which may
start thread pools (OpenMP, BLAS) that do not survive a fork, runs in each worker after the
fork (``post_fork_hook``) as a warm-up. Models whose *loading* already starts OpenMP
(xgboost, lightgbm) are loaded in each worker instead: the launcher adds ``--lazy-apps``.
"""

import gc
import importlib
import json
import logging
import os
import sys
import time

from mlhub.errors import MlhubError
from mlhub.sysusers import SystemAccount, demote

from .app import create_app
from .auth import AccessList, Authenticator, HubUsers
from .metrics import Metrics
from .model import ParityFailed, ServedModel
from .settings import Settings

try:
    import uwsgi
except ImportError:  # imported outside uWSGI (tests, tools)
    uwsgi = None

logging.basicConfig(
    level=logging.INFO,
    stream=sys.stderr,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
log = logging.getLogger("mlhub.serving")


def shared_metrics():
    """Metrics in uWSGI's shared area (one slot per worker), or private ones outside uWSGI."""
    if uwsgi is None:
        return Metrics()
    slots = uwsgi.numproc + 1
    try:
        area = uwsgi.sharedarea_memoryview(0)
    except (ValueError, SystemError, TypeError):
        area = None
    metrics = Metrics(area, slots=slots)
    if metrics.slots != slots:
        log.warning("no uWSGI --sharedarea for metrics: /metrics counts one worker only")
    metrics.bind_worker(uwsgi.worker_id())
    return metrics


def build(settings):
    """Load the bundle and build the app for ``settings``: ``(wsgi app, served, metrics)``."""
    served = ServedModel.load(settings.bundle, version=settings.version)
    metrics = shared_metrics()
    authenticator = None
    if settings.auth:
        hub = HubUsers(settings.hub_api_url) if settings.hub_api_url else None
        authenticator = Authenticator(AccessList(settings.access_file), hub, owner=settings.owner)
        if not settings.access_file and hub is None:
            log.warning(
                "MLHUB_AUTH is on but neither MLHUB_ACCESS_FILE nor JUPYTERHUB_API_URL "
                "is set: every request that needs a token will be refused"
            )
    return (
        create_app(settings, served, metrics=metrics, authenticator=authenticator),
        served,
        metrics,
    )


def _after_fork():
    """In each new worker: count into its own metrics slot, then warm the model up on the
    bundle's example and check parity with the notebook's answers. That is also the load
    check: a model that cannot predict its own example, or answers otherwise than the
    notebook's model did, stays not ready (``/readyz`` answers 503 with the reason), so a
    deployer's readiness gate refuses it and the version before keeps serving."""
    metrics.bind_worker(uwsgi.worker_id())
    if served.ready:
        try:
            served.self_test()
            return
        except ParityFailed as exc:
            served.fail(exc.message)
        except Exception as exc:
            reason = exc.message if isinstance(exc, MlhubError) else f"{type(exc).__name__}: {exc}"
            served.fail(f"it cannot predict its own example: {reason}")
        metrics.gauges["mlhub_model_ready"] = (metrics.gauges["mlhub_model_ready"][0], 0)


def wait_as_spare(path):
    """A spare instance (``--spare``): import the libraries models usually need now, then wait
    until the deployer writes ``path`` (atomically): ``{"cwd": bundle dir, "env": {...}, "log":
    file, "account": {...}}``, or ``{"stop": true}``. uWSGI has not forked the workers or its
    HTTP router yet, so everything after this (the model, the workers, the router) starts in
    the bundle directory, with the model's environment, writing to the model's log, and, given
    an ``account`` (multi-user mode), as the model owner's system account: the spare becomes
    it before it touches the bundle (the log is opened first: only the publisher may read it).
    SIGTERM does not stop uWSGI while it loads an app: the deployer stops a waiting spare with
    SIGKILL (it has no children) or with ``stop``."""
    for name in filter(None, os.environ.get("MLHUB_SPARE_IMPORTS", "").split(",")):
        try:
            importlib.import_module(name.strip())
        except ImportError as exc:
            log.warning("spare: cannot import %s: %s", name, exc)
    while True:
        try:
            with open(path) as fh:
                spec = json.load(fh)
            break
        except (FileNotFoundError, ValueError):
            time.sleep(0.01)
    if spec.get("stop"):
        os._exit(0)
    fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for std in (1, 2):
        os.dup2(fd, std)
    os.close(fd)
    if spec.get("account"):
        account = SystemAccount.from_dict(spec["account"])
        demote(account.uid, account.gid, account.gids, umask=0o077)
    os.chdir(spec["cwd"])
    os.environ.update(spec["env"])


if os.environ.get("MLHUB_SPARE_FILE"):
    wait_as_spare(os.environ["MLHUB_SPARE_FILE"])
application, served, metrics = build(Settings.from_env())
# Everything loaded so far (libraries, the model) lives as long as the process. Moving it out
# of the garbage collector's reach keeps full collections short (one over the ~140k objects of
# a loaded sklearn model server takes tens of ms: a latency spike in whichever request it
# hits) and keeps the collector from writing to the master's pages the workers share.
gc.freeze()
if uwsgi is not None:
    if uwsgi.worker_id() > 0:  # --lazy-apps: this import already runs in a worker
        _after_fork()
    else:
        uwsgi.post_fork_hook = _after_fork
