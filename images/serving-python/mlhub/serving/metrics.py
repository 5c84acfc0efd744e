"""Prometheus metrics summed across uWSGI workers, with no shared locks and no syscalls.

Choice: each worker owns one *slot* of 64-bit counters in uWSGI's shared area (``--sharedarea``,
memory the master maps before forking, so every worker, even a respawned one or one loaded with
``--lazy-apps``, sees the same pages). A worker only ever writes its own slot, so increments need
no lock between processes; ``/metrics`` (served by any worker) sums the slots. Within a
worker, request threads (``--threads``, used by micro-batching) share the slot, so a lock of
the worker's own makes each read-modify-write whole (uncontended it costs well under a
microsecond). Counters survive worker respawns because the slot outlives the process. Outside
uWSGI (tests, ``check``) a private buffer with a single slot stands in.

Per slot: requests by route and status, a latency histogram by route (non-cumulative buckets,
made cumulative when rendered), latency sums in microseconds, the number of rows predicted, and
the rows the inference log sent and dropped.
"""

import math
import threading
from bisect import bisect_left

import numpy as np

# Label values of ``route``: the route templates of the serving contract, plus "other".
ROUTES = (
    "/healthz",
    "/readyz",
    "/v1/metadata",
    "/v1/predict",
    "/v2/models/{name}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/infer",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2",
    "/metrics",
    "/openapi.json",
    "other",
)
STATUSES = (200, 201, 204, 400, 401, 403, 404, 405, 406, 413, 415, 422, 500, 502, 503, 504)
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_S = len(STATUSES) + 1  # + "other" status
_B = len(BUCKETS) + 1  # + "+Inf"
_R = len(ROUTES)
_HIST = _R * _S
_SUM = _HIST + _R * _B
_ROWS = _SUM + _R
_LOGGED = _ROWS + 1  # rows the inference log sent
_LOG_DROPPED = _ROWS + 2  # rows it left out (its buffer full, the publisher failing)
SLOT_WORDS = _ROWS + 3
_STATUS_INDEX = {code: i for i, code in enumerate(STATUSES)}
PAGE = 4096


def area_pages(workers):
    """Pages of ``--sharedarea`` needed for ``workers`` slots plus the master's slot 0."""
    return math.ceil((workers + 1) * SLOT_WORDS * 8 / PAGE)


class Metrics:
    """Counters in ``buffer`` (a writable memoryview, shared between workers or private)."""

    def __init__(self, buffer=None, slots=1, info=None):
        if buffer is None or len(buffer) < slots * SLOT_WORDS * 8:
            buffer = memoryview(bytearray(slots * SLOT_WORDS * 8))
            slots = 1
        self.slots = slots
        self._words = buffer.cast("B").cast("Q")
        self._all = np.frombuffer(buffer, dtype=np.uint64, count=slots * SLOT_WORDS).reshape(
            slots, SLOT_WORDS
        )
        self._base = 0
        self._lock = threading.Lock()
        self.info = info or {}
        self.gauges = {}

    def bind_worker(self, worker_id):
        """Write into the slot of uWSGI worker ``worker_id`` (1..N; 0 is the master)."""
        if 0 <= worker_id < self.slots:
            self._base = worker_id * SLOT_WORDS

    def observe(self, route, status, seconds):
        """Count one finished request: route index (into ``ROUTES``), HTTP status, latency."""
        w, base = self._words, self._base
        status_word = base + route * _S + _STATUS_INDEX.get(status, _S - 1)
        bucket_word = base + _HIST + route * _B + bisect_left(BUCKETS, seconds)
        with self._lock:
            w[status_word] += 1
            w[bucket_word] += 1
            w[base + _SUM + route] += int(seconds * 1e6)

    def add_rows(self, rows):
        with self._lock:
            self._words[self._base + _ROWS] += rows

    def add_logged(self, logged, dropped):
        """Count rows the inference log sent and dropped (``inferencelog.InferenceLog``)."""
        with self._lock:
            self._words[self._base + _LOGGED] += logged
            self._words[self._base + _LOG_DROPPED] += dropped

    def totals(self):
        """Counters summed over every worker's slot (one vector of ``SLOT_WORDS``)."""
        return self._all.sum(axis=0, dtype=np.uint64)

    def render(self):
        """The Prometheus text exposition (version 0.0.4) of every metric."""
        t = self.totals().tolist()
        out = [
            "# HELP mlhub_requests_total HTTP requests answered, by route and status.",
            "# TYPE mlhub_requests_total counter",
        ]
        codes = [str(c) for c in STATUSES] + ["other"]
        for r, route in enumerate(ROUTES):
            for s, code in enumerate(codes):
                n = t[r * _S + s]
                if n:
                    out.append(f'mlhub_requests_total{{route="{route}",status="{code}"}} {n}')
        out += [
            "# HELP mlhub_request_duration_seconds Time from request to response, by route.",
            "# TYPE mlhub_request_duration_seconds histogram",
        ]
        les = [repr(b) for b in BUCKETS] + ["+Inf"]
        for r, route in enumerate(ROUTES):
            counts = t[_HIST + r * _B : _HIST + (r + 1) * _B]
            total = sum(counts)
            if not total:
                continue
            running = 0
            for le, n in zip(les, counts, strict=True):
                running += n
                out.append(
                    f'mlhub_request_duration_seconds_bucket{{route="{route}",le="{le}"}} {running}'
                )
            out.append(f'mlhub_request_duration_seconds_sum{{route="{route}"}} {t[_SUM + r] / 1e6}')
            out.append(f'mlhub_request_duration_seconds_count{{route="{route}"}} {total}')
        out += [
            "# HELP mlhub_predictions_total Rows predicted (one request may carry many rows).",
            "# TYPE mlhub_predictions_total counter",
            f"mlhub_predictions_total {t[_ROWS]}",
            "# HELP mlhub_inference_log_rows_total Rows the inference log sent to the publisher.",
            "# TYPE mlhub_inference_log_rows_total counter",
            f"mlhub_inference_log_rows_total {t[_LOGGED]}",
            "# HELP mlhub_inference_log_dropped_total Sampled rows the inference log left out "
            "(its buffer was full).",
            "# TYPE mlhub_inference_log_dropped_total counter",
            f"mlhub_inference_log_dropped_total {t[_LOG_DROPPED]}",
        ]
        for name, (help_text, value) in self.gauges.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        if self.info:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in self.info.items())
            out += [
                "# HELP mlhub_model_info The served model (always 1).",
                "# TYPE mlhub_model_info gauge",
                f"mlhub_model_info{{{labels}}} 1",
            ]
        return "\n".join(out) + "\n"


def _escape(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
