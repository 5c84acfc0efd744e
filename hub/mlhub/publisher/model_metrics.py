"""What the Models page charts of a model, read from its serving runtime's own ``/metrics``.

The runtime counts requests by route and status and keeps a latency histogram by route
(``mlhub.serving.metrics``, Prometheus text). For the page only the prediction routes matter
(``/v1/predict`` and the Open Inference Protocol's ``infer``): ``summary`` turns the text into
their totals since the serving process started, and the page's script turns two summaries a few
seconds apart into a request rate, an error rate and latency percentiles. Counters of several
workers are already summed by the runtime; a restart starts them from zero again, which the
script treats as a new start (a counter that goes down).
"""

import re

PREDICT_ROUTES = ("/v1/predict", "/v2/models/{name}/infer")
# labels may hold braces (route="/v2/models/{name}/infer"): they end at the last "} "
_LINE = re.compile(r"^(\w+)\{(.*)\} ([0-9.eE+-]+|NaN|\+Inf)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _samples(text):
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            name, labels, value = match.groups()
            yield name, dict(_LABEL.findall(labels)), float(value)


def summary(text):
    """``{"requests", "errors", "latency": [[le, cumulative count], ...], "latency_sum",
    "rows"}`` of the prediction routes, from a runtime's ``/metrics`` text."""
    requests = errors = latency_sum = 0.0
    buckets = {}
    rows = 0.0
    for name, labels, value in _samples(text):
        if labels.get("route") not in PREDICT_ROUTES:
            continue
        if name == "mlhub_requests_total":
            requests += value
            status = labels.get("status", "")
            if not status.isdigit() or int(status) >= 400:
                errors += value
        elif name == "mlhub_request_duration_seconds_bucket":
            le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + value
        elif name == "mlhub_request_duration_seconds_sum":
            latency_sum += value
    for line in text.splitlines():  # the untyped total line (no labels)
        if line.startswith("mlhub_predictions_total "):
            rows = float(line.split()[1])
    latency = [[le if le != float("inf") else None, n] for le, n in sorted(buckets.items())]
    return {
        "requests": int(requests),
        "errors": int(errors),
        "latency": latency,
        "latency_sum": latency_sum,
        "rows": int(rows),
    }
