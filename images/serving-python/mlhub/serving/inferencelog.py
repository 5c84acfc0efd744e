"""The inference log's runtime side: a sample of answered predictions, sent to the publisher in
batches, never on the request's path.

A request to ``/v1/predict`` or ``/v2/models/{name}/infer`` is sampled (``MLHUB_INFERENCE_LOG``,
a fraction of requests, 0 = off) once its answer is sent: the view leaves the model's input
(the DataFrame or array the model was called with) and its output in the WSGI environ
(``LOGGED``), a refused request leaves its error, and the gateway calls ``InferenceLog.record``
from the response's ``close()``, which the server calls after it wrote the whole answer (the
caller has it; a proxy in front has passed it on). ``record`` encodes the request as JSON there
(tens of microseconds, in the worker's own thread, between two requests) and appends it to a
bounded buffer. A thread of the worker's own (started with the first record, so after uWSGI
forked the worker) joins what the buffer holds every ``MLHUB_INFERENCE_LOG_FLUSH_SECONDS`` into
one gzipped JSON document (joining bytes, and zlib, which lets other threads run) and sends it
to ``MLHUB_INFERENCE_LOG_URL`` (the publisher, which stores it:
``mlhub.publisher.inference_log``) with the model's log token (``MLHUB_INFERENCE_LOG_TOKEN``,
which lets it write this model's log and nothing else). That thread encoding whole batches
itself held Python's lock for tens of milliseconds every few seconds, and a request arriving
meanwhile waited: the p99 of a model logging every request rose by more than a millisecond.

When the buffer holds ``MLHUB_INFERENCE_LOG_BUFFER`` rows (the publisher is down or slow), new
requests are not recorded but counted (``mlhub_inference_log_dropped_total``), so memory stays
bounded and callers never wait; a batch the publisher could not take (down, 5xx) goes back into
the buffer if it fits, else it is counted as dropped too, as is a batch it refused (429: the
model logs more rows a minute than the publisher takes of one model).
"""

import atexit
import gzip
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request

from .jsonio import dumps
from .requestlog import ERROR

LOGGED = "mlhub.logged"  # environ key: (model input, rows, predictions) of an answered request
POST_TIMEOUT = 10.0  # seconds one batch may take to reach the publisher

log = logging.getLogger("mlhub.serving.inferencelog")


def sent_rows(payload, model_input):
    """What to log as a JSON request's rows: its own records when it sent records (plain JSON
    values already, nothing to convert), else the model's input."""
    instances = payload.get("instances") if isinstance(payload, dict) else payload
    if isinstance(instances, list) and instances and isinstance(instances[0], dict):
        return instances
    return model_input


def plain_rows(model_input):
    """A model input as rows of plain values: a DataFrame's as one object per row, through
    numpy (pandas' own ``to_dict`` costs half a millisecond per small frame, paid by the worker
    between two requests); an array's as lists. Values numpy cannot make plain (timestamps) are
    left to ``dumps``."""
    if hasattr(model_input, "columns"):
        columns = [str(c) for c in model_input.columns]
        return [dict(zip(columns, row, strict=True)) for row in model_input.to_numpy().tolist()]
    return model_input


def encode_request(when, status, seconds, model_input, outputs, error):
    """One logged request as JSON: what it sent (as rows), what it was answered, or its error."""
    request = {
        "time": when,
        "status": status,
        "ms": round(seconds * 1000, 3),
        "inputs": plain_rows(model_input),
        "outputs": outputs,
        "error": error,
    }
    return dumps(request)


def post_batch(url, token, body):
    """POST one gzipped JSON batch; raise ``OSError`` (``URLError``, ``HTTPError``) on failure."""
    request = urllib.request.Request(
        url,
        data=gzip.compress(body, compresslevel=1),
        method="POST",
        headers={
            "Authorization": f"token {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    with urllib.request.urlopen(request, timeout=POST_TIMEOUT) as response:
        response.read()


class InferenceLog:
    """The sampled requests of one worker, waiting to be sent (see the module).

    ``send(body)`` delivers one encoded batch (default: ``post_batch`` to ``url``); ``counters``
    is told ``(logged_rows, dropped_rows)`` as they happen (the worker's metrics slot).
    """

    def __init__(
        self,
        *,
        version,
        sample,
        url=None,
        token=None,
        max_rows=10_000,
        flush_seconds=2.0,
        send=None,
        counters=None,
        clock=time.time,
        rand=random.random,
    ):
        if not 0 < sample <= 1:
            raise ValueError(f"the inference log's sample must be in (0, 1], got {sample}")
        self.version = version
        self.sample = sample
        self.max_rows = max_rows
        self.flush_seconds = flush_seconds
        self.send = send or (lambda body: post_batch(url, token, body))
        self.counters = counters or (lambda logged, dropped: None)
        self.clock = clock
        self.rand = rand
        self._entries = []
        self._rows = 0
        self._lock = threading.Lock()
        self._pid = None  # the process whose thread sends (a forked worker starts its own)
        self._failing = False

    def record(self, environ, status, seconds):
        """Called for every answered predict request, after its answer was sent: keep it,
        encoded, if it is in the sample."""
        if self.sample < 1 and self.rand() >= self.sample:
            return
        logged = environ.get(LOGGED)
        if logged is not None:
            model_input, rows, outputs = logged
            error = None
        else:
            model_input, rows, outputs = None, 1, None
            error = environ.get(ERROR, (None, None))[1]
        if self._rows + rows > self.max_rows:  # full: not worth encoding (checked again below)
            self.counters(0, rows)
            return
        entry = encode_request(self.clock(), status, seconds, model_input, outputs, error)
        pid = os.getpid()
        with self._lock:
            full = self._rows + rows > self.max_rows
            if not full:
                self._entries.append(entry)
                self._rows += rows
            start, self._pid = self._pid != pid, pid
        if full:
            self.counters(0, rows)
        if start:  # the first record of this process (a worker uWSGI forked)
            threading.Thread(target=self._run, name="mlhub-inference-log", daemon=True).start()
            atexit.register(self.flush)

    def _run(self):
        while True:
            time.sleep(self.flush_seconds)
            try:
                self.flush()
            except Exception:  # the log must never take the worker down
                log.exception("inference log: a batch could not be sent")

    def take(self):
        """Everything buffered, as ``(entries, rows)``, leaving the buffer empty."""
        with self._lock:
            entries, rows = self._entries, self._rows
            self._entries, self._rows = [], 0
        return entries, rows

    def encode(self, entries):
        """One batch, as the publisher's ``POST .../inference-log`` reads it, of requests
        ``record`` encoded already."""
        return b'{"version":%s,"requests":[%s]}' % (dumps(self.version), b",".join(entries))

    def flush(self):
        """Send what is buffered now; put it back (if it fits) when the publisher is down or
        fails (5xx), drop and count it when the publisher refuses it (4xx: over the model's
        rate)."""
        entries, rows = self.take()
        if not entries:
            return
        try:
            self.send(self.encode(entries))
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                self._keep(entries, rows, exc)
                return
            # refused as it is (over the model's rate, a version the publisher dropped):
            # sending it again would be refused again
            log.warning("inference log: the publisher refused a batch of %d rows: %s", rows, exc)
            self.counters(0, rows)
            return
        except (OSError, ValueError) as exc:
            self._keep(entries, rows, exc)
            return
        if self._failing:
            log.warning("inference log: the publisher takes batches again")
            self._failing = False
        self.counters(rows, 0)

    def _keep(self, entries, rows, exc):
        """A batch the publisher could not take now: back into the buffer if it fits."""
        if not self._failing:
            log.warning("inference log: the publisher did not take a batch: %s", exc)
        self._failing = True
        with self._lock:
            if self._rows + rows <= self.max_rows:
                self._entries[:0] = entries
                self._rows += rows
                return
        self.counters(0, rows)


def from_settings(settings, counters=None):
    """The ``InferenceLog`` the runtime's settings ask for, or None (off)."""
    if not settings.inference_log_sample:
        return None
    token = os.environ.get("MLHUB_INFERENCE_LOG_TOKEN", "")
    if not settings.inference_log_url or not token:
        log.warning(
            "MLHUB_INFERENCE_LOG is on but MLHUB_INFERENCE_LOG_URL or MLHUB_INFERENCE_LOG_TOKEN "
            "is not set: no request is logged"
        )
        return None
    return InferenceLog(
        version=settings.version,
        sample=settings.inference_log_sample,
        url=settings.inference_log_url,
        token=token,
        max_rows=settings.inference_log_buffer,
        flush_seconds=settings.inference_log_flush_seconds,
        counters=counters,
    )
