"""Metrics: per-worker slots in one buffer, summed on render; Prometheus text format."""

from mlhub.serving.metrics import PAGE, ROUTES, SLOT_WORDS, Metrics, area_pages

PREDICT = ROUTES.index("/v1/predict")


def test_each_worker_writes_its_own_slot_and_render_sums_them():
    shared = memoryview(bytearray(3 * SLOT_WORDS * 8))  # what uWSGI's shared area provides
    workers = [Metrics(shared, slots=3) for _ in range(3)]
    for worker_id, metrics in enumerate(workers):
        metrics.bind_worker(worker_id)
    workers[1].observe(PREDICT, 200, 0.002)
    workers[2].observe(PREDICT, 200, 0.7)
    workers[2].observe(PREDICT, 418, 0.0001)  # a status not in the list counts as "other"
    workers[1].add_rows(5)
    text = workers[0].render()
    assert 'mlhub_requests_total{route="/v1/predict",status="200"} 2' in text
    assert 'mlhub_requests_total{route="/v1/predict",status="other"} 1' in text
    assert 'mlhub_request_duration_seconds_bucket{route="/v1/predict",le="0.0025"} 2' in text
    assert 'mlhub_request_duration_seconds_bucket{route="/v1/predict",le="0.5"} 2' in text
    assert 'mlhub_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"} 3' in text
    assert 'mlhub_request_duration_seconds_count{route="/v1/predict"} 3' in text
    assert "mlhub_predictions_total 5" in text
    assert "/healthz" not in text  # routes without traffic are left out


def test_gauges_and_info_are_rendered_escaped():
    metrics = Metrics(info={"name": 'a"b', "version": "sha256:1"})
    metrics.gauges = {"mlhub_model_ready": ("1 when loaded.", 1)}
    text = metrics.render()
    assert "# TYPE mlhub_model_ready gauge\nmlhub_model_ready 1" in text
    assert 'mlhub_model_info{name="a\\"b",version="sha256:1"} 1' in text
    assert text.endswith("\n")


def test_too_small_a_buffer_falls_back_to_a_private_slot():
    metrics = Metrics(memoryview(bytearray(8)), slots=4)
    assert metrics.slots == 1
    metrics.bind_worker(3)  # out of range: keeps slot 0
    metrics.observe(0, 200, 0.0)
    assert metrics.totals()[0] == 1


def test_area_pages_cover_every_worker_and_the_master():
    for workers in (1, 2, 16, 64):
        assert area_pages(workers) * PAGE >= (workers + 1) * SLOT_WORDS * 8
