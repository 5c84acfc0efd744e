"""Micro-batching in-process: many threads share model calls, each caller gets its own answer.

``MicroBatcher`` is driven the way uWSGI's request threads drive it (enter, convert, run), with
models that report the batch they were called with. The real-uWSGI version of these checks is
in tests/component/test_serving_uwsgi.py.
"""

import threading
import time

import numpy as np
import pandas as pd
import pytest

from mlhub.serving.batching import PREDICT, PREDICT_PROBA, MicroBatcher, Unbatched
from mlhub.serving.model import PredictionFailed, ServedModel


class BatchReporter:
    """Answers ``[row id, rows in this call]`` per row; refuses negative ids; calls are slow
    enough (``delay``) that concurrent requests queue up behind one another."""

    def __init__(self, delay=0.01):
        self.delay = delay
        self.calls = []
        self.lock = threading.Lock()

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        with self.lock:
            self.calls.append(len(X))
        time.sleep(self.delay)
        if (X[:, 0] < 0).any():
            raise ValueError("negative ids are refused")
        return np.column_stack([X[:, 0], np.full(len(X), len(X))])

    def predict_proba(self, X):
        X = np.asarray(X, dtype=float)
        return np.column_stack([X[:, 0], -X[:, 0]])


def served(model):
    return ServedModel("/b", manifest={"name": "m"}, model=model, version="v")


def call(predictor, rows, outputs=(PREDICT,)):
    with predictor.request() as run:
        return run(np.asarray(rows, dtype=float), len(rows), outputs)


def in_threads(n, target):
    """Run ``target(i)`` in ``n`` threads started together; ``{i: result or exception}``."""
    results = {}
    barrier = threading.Barrier(n)

    def worker(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_each_caller_gets_its_own_rows_back():
    model = BatchReporter()
    batcher = MicroBatcher(served(model), max_size=16, max_wait=0.005)
    results = in_threads(64, lambda i: call(batcher, [[i, 0.0]], (PREDICT, PREDICT_PROBA)))
    for i, result in results.items():
        assert result[PREDICT][:, 0].tolist() == [i]
        assert result[PREDICT_PROBA].tolist() == [[i, -i]]
    assert max(model.calls) > 1, "concurrent requests should have shared calls"
    assert max(model.calls) <= 16 and sum(model.calls) == 64


def test_batches_respect_max_size_in_rows():
    model = BatchReporter()
    batcher = MicroBatcher(served(model), max_size=5, max_wait=0.005)
    results = in_threads(30, lambda i: call(batcher, [[i, 0.0], [i, 1.0]]))
    for i, result in results.items():
        assert result[PREDICT][:, 0].tolist() == [i, i]
    assert max(model.calls) <= 5 and sum(model.calls) == 60
    # a request larger than a batch is predicted alone, in its own thread
    big = call(batcher, [[7.0, 0.0]] * 12)
    assert big[PREDICT][:, 1].tolist() == [12] * 12


def test_a_refused_request_fails_alone():
    model = BatchReporter(delay=0.02)
    batcher = MicroBatcher(served(model), max_size=64, max_wait=0.005)
    results = in_threads(24, lambda i: call(batcher, [[-i if i % 8 == 3 else i, 0.0]]))
    for i, result in results.items():
        if i % 8 == 3:
            assert isinstance(result, PredictionFailed)
            assert "negative ids are refused" in result.message
        else:
            assert result[PREDICT][:, 0].tolist() == [i]


def test_a_request_that_fails_before_the_queue_does_not_hold_others():
    batcher = MicroBatcher(served(BatchReporter(delay=0)), max_size=8, max_wait=30)
    with pytest.raises(ValueError), batcher.request():  # e.g. a body that does not convert:
        float("not a number")  # the batcher must stop expecting this request
    started = time.monotonic()
    assert call(batcher, [[1.0, 0.0]])[PREDICT].tolist() == [[1.0, 1.0]]
    assert time.monotonic() - started < 10  # it did not wait out max_wait (30 s)


def test_a_lone_request_is_never_held_back():
    batcher = MicroBatcher(served(BatchReporter(delay=0)), max_size=64, max_wait=30)
    started = time.monotonic()
    for i in range(3):
        assert call(batcher, [[i, 0.0]])[PREDICT].tolist() == [[i, 1.0]]
    assert time.monotonic() - started < 10


def test_dataframe_inputs_and_outputs_are_batched_and_split():
    class FrameModel:
        def predict(self, X):
            return pd.DataFrame({"id": X["a"].to_numpy(), "n": len(X)})

    batcher = MicroBatcher(served(FrameModel()), max_size=64, max_wait=0.005)

    def one(i):
        with batcher.request() as run:
            return run(pd.DataFrame({"a": [i, i], "b": ["x", "y"]}), 2, (PREDICT,))

    for i, result in in_threads(16, one).items():
        assert result[PREDICT]["id"].tolist() == [i, i]


def test_unbatched_has_the_same_interface():
    model = BatchReporter(delay=0)
    results = in_threads(8, lambda i: call(Unbatched(served(model)), [[i, 0.0]]))
    assert all(results[i][PREDICT].tolist() == [[i, 1.0]] for i in range(8))
    assert model.calls == [1] * 8
