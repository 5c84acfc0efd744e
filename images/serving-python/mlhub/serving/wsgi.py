"""The uWSGI entry point (``--module mlhub.serving.wsgi``): settings, model, app, once.

By default uWSGI imports this module in the master and then forks the workers, so the model is
unpickled once and its memory is shared copy-on-write by every worker (N workers cost about
one model's memory, and a respawned worker starts instantly). The first prediction, which may
start thread pools (OpenMP, BLAS) that do not survive a fork, runs in each worker after the
fork (``post_fork_hook``) as a warm-up. Models whose *loading* already starts OpenMP
(xgboost, lightgbm) are loaded in each worker instead: the launcher adds ``--lazy-apps``.
"""

import gc
import logging
import sys

from mlhub.errors import MlhubError

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
