"""One structured line per request outcome in the model's log, so a refused or failed call can
be found and understood: what was asked, what was answered and why.

A line is JSON after the word ``request``::

    request {"method": "POST", "route": "/v1/predict", "status": 400, "ms": 0.41,
             "code": "invalid_input", "error": "row 1, input 'pw': a missing value ..."}

``MLHUB_REQUEST_LOG`` says which outcomes are written: ``errors`` (every 4xx and 5xx, the
default), ``all`` or ``off``. At most ``MLHUB_REQUEST_LOG_RATE`` lines a second are written per
worker, so a flood of bad calls cannot fill the disk or slow the good ones; what is left out is
counted, and the next line written says how many (``"dropped": N``). The route is the route's
template (``/v2/models/{name}/infer``), never a caller's path or body, and no credential is
ever written. uWSGI's own access log stays off: it costs 10-25% of a small model's throughput
and says nothing about why a request failed.
"""

import json
import logging
import time

from . import metrics as metrics_module

ERROR = "mlhub.error"  # environ key: (code, message) of the error the response carries
MODES = ("off", "errors", "all")
MAX_ERROR_CHARS = 500  # an error message is cut there in the log line

log = logging.getLogger("mlhub.serving.requests")


class RequestLog:
    """Decides, per request outcome, whether to write its line, within the rate."""

    def __init__(self, mode="errors", rate=20, clock=time.monotonic, write=None):
        if mode not in MODES:
            raise ValueError(f"request log mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.rate = rate
        self.clock = clock
        self.write = write or (lambda line: log.info("%s", line))
        self._second = None
        self._written = 0
        self.dropped = 0

    def outcome(self, environ, method, route, status, seconds):
        """Record one answered request (``route``: an index into ``metrics.ROUTES``)."""
        if self.mode == "off" or (self.mode == "errors" and status < 400):
            return
        second = int(self.clock())
        if second != self._second:
            self._second, self._written = second, 0
        if self._written >= self.rate:
            self.dropped += 1
            return
        self._written += 1
        entry = {
            "method": method,
            "route": metrics_module.ROUTES[route],
            "status": status,
            "ms": round(seconds * 1000, 2),
        }
        error = environ.get(ERROR)
        if error is not None:
            code, message = error
            entry["code"] = code
            entry["error"] = message[:MAX_ERROR_CHARS]
        if self.dropped:
            entry["dropped"] = self.dropped
            self.dropped = 0
        self.write("request " + json.dumps(entry, ensure_ascii=False))
