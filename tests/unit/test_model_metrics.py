"""The Models page's reading of a runtime's ``/metrics`` (``publisher.model_metrics``), on the
text the real serving metrics render (``mlhub.serving.metrics.Metrics``)."""

from mlhub.publisher.model_metrics import summary
from mlhub.serving.metrics import ROUTES, Metrics


def test_prediction_totals_errors_and_latency_from_the_runtimes_own_text():
    metrics = Metrics()
    predict, infer, health = (
        ROUTES.index(r) for r in ("/v1/predict", "/v2/models/{name}/infer", "/healthz")
    )
    for seconds in (0.0004, 0.003, 0.003, 0.2):
        metrics.observe(predict, 200, seconds)
    metrics.observe(predict, 400, 0.0004)
    metrics.observe(infer, 500, 0.02)
    metrics.observe(health, 200, 0.0001)  # not a prediction: left out
    got = summary(metrics.render())
    assert (got["requests"], got["errors"]) == (6, 2)
    latency = dict((le, n) for le, n in got["latency"])
    assert latency[0.0005] == 2 and latency[0.005] == 4 and latency[0.025] == 5
    assert latency[None] == 6  # +Inf: every request
    assert abs(got["latency_sum"] - (0.0004 + 0.003 * 2 + 0.2 + 0.0004 + 0.02)) < 1e-5


def test_a_runtime_with_no_traffic_reads_as_zeros():
    assert summary(Metrics().render()) == {
        "requests": 0,
        "errors": 0,
        "latency": [],
        "latency_sum": 0.0,
        "rows": 0,
    }
