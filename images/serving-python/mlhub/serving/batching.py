"""Adaptive micro-batching: concurrent small requests in one worker share one model call.

Why: many models cost about the same for 64 rows as for one (a 200-tree random forest walks
every tree either way), so answering requests that arrive together with one vectorised call
multiplies throughput. The known failure of batching servers is the other side: waiting for a
batch to fill adds latency when there is no load. This batcher never waits on a guess:

- uWSGI runs each worker with ``MLHUB_THREADS`` request threads (``--threads``). Each thread
  parses and validates its own request, so a malformed payload fails only its caller, then
  queues the converted input. The thread that finds no batch running runs the next one itself
  (see ``MicroBatcher``); the others wait until answered.
- A batch takes what is queued (up to ``max_size`` rows). It waits for more only while other
  requests are known to be *arriving* (a thread is inside a predict view, still reading or
  converting its body), and then at most ``max_wait`` seconds. A lone request is predicted
  at once, in its own thread, so an idle server answers as fast as without batching.
- While the model runs, new requests queue up: under load, batches form by themselves.
- If the batch call fails (one row can make a model raise for all), each request is predicted
  alone, so only the caller whose input the model refuses gets the error.

``Unbatched`` offers the same interface without any of this (``MLHUB_BATCHING=off``).
"""

import logging
import threading
from collections import deque
from time import monotonic

import numpy as np

log = logging.getLogger("mlhub.serving")

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


def run_outputs(served, model_input, outputs):
    """``{output name: values}`` for each of ``outputs`` (``predict``, ``predict_proba``)."""
    return {
        name: served.predict(model_input) if name == PREDICT else served.predict_proba(model_input)
        for name in outputs
    }


class Unbatched:
    """Predict in the request's own thread. ``with predictor.request() as run:`` as below."""

    def __init__(self, served):
        self.served = served

    def request(self):
        return self

    def __enter__(self):
        return self.run

    def __exit__(self, *exc):
        return False

    def run(self, model_input, rows, outputs):
        return run_outputs(self.served, model_input, outputs)


class _Job:
    __slots__ = ("input", "rows", "outputs", "results", "error", "lead", "wake")

    def __init__(self, model_input, rows, outputs):
        self.input = model_input
        self.rows = rows
        self.outputs = outputs
        self.results = None
        self.error = None
        self.lead = False  # set when this request's thread is to run the next batch
        self.wake = threading.Lock()
        self.wake.acquire()  # released when answered, or when made the leader


class _Arrival:
    """One request from the moment its view starts (it counts as arriving) until answered."""

    __slots__ = ("batcher", "pending")

    def __init__(self, batcher):
        self.batcher = batcher
        self.pending = False

    def __enter__(self):
        batcher = self.batcher
        with batcher._cond:
            batcher._arriving += 1
        self.pending = True
        return self.run

    def run(self, model_input, rows, outputs):
        return self.batcher._submit(self, model_input, rows, outputs)

    def __exit__(self, *exc):
        if self.pending:  # it failed before reaching the queue: stop waiting for it
            self.batcher._depart(self)
        return False


def _concat(inputs):
    first = inputs[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(inputs)
    if hasattr(first, "iloc"):
        import pandas as pd

        return pd.concat(inputs, ignore_index=True)
    raise TypeError(f"cannot batch model inputs of type {type(first).__name__}")


def _slice(values, start, end):
    iloc = getattr(values, "iloc", None)  # a DataFrame output
    return iloc[start:end] if iloc is not None else values[start:end]


class MicroBatcher:
    """Collects this worker's concurrent requests into model calls of at most ``max_size`` rows.

    ``with batcher.request() as run: ... run(model_input, rows, outputs)`` -- enter before
    reading the body (that is what tells the batcher a request is arriving). A request with
    more than ``max_size`` rows is already a batch: it is predicted alone.

    There is no batching thread: the request that finds no batch running runs one itself
    (the *leader*) with whatever is queued, its own request first; the others wait on their
    own lock. When the batch is done the leader wakes its callers and hands the lead to the
    oldest queued request, if any. So a lone request is predicted in its own thread exactly as
    without batching, with no hand-off to another thread to wait for (on a busy machine each
    wake-up of another thread can cost a scheduler time slice).
    """

    def __init__(self, served, *, max_size, max_wait):
        self.served = served
        self.max_size = max_size
        self.max_wait = max_wait
        self._cond = threading.Condition(threading.Lock())
        self._queue = deque()
        self._queued_rows = 0
        self._arriving = 0
        self._busy = False  # a leader is collecting or running a batch

    def request(self):
        return _Arrival(self)

    def _depart(self, arrival):
        with self._cond:
            arrival.pending = False
            self._arriving -= 1
            self._cond.notify()

    def _submit(self, arrival, model_input, rows, outputs):
        if rows > self.max_size:
            self._depart(arrival)
            return run_outputs(self.served, model_input, outputs)
        job = _Job(model_input, rows, outputs)
        with self._cond:
            arrival.pending = False
            self._arriving -= 1
            self._queue.append(job)
            self._queued_rows += rows
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                self._cond.notify()  # the leader may be waiting for this arrival
        if not lead:
            job.wake.acquire()
            lead = job.lead
        if lead:
            self._lead()
        if job.error is not None:
            raise job.error
        return job.results

    def _lead(self):
        """Run one batch from the head of the queue (the leader's own request is first)."""
        cond, queue = self._cond, self._queue
        with cond:
            if self._arriving and self._queued_rows < self.max_size and self.max_wait:
                deadline = monotonic() + self.max_wait
                while self._arriving and self._queued_rows < self.max_size:
                    remaining = deadline - monotonic()
                    if remaining <= 0:
                        break
                    cond.wait(remaining)
            batch = [queue.popleft()]
            rows = batch[0].rows
            while queue and rows + queue[0].rows <= self.max_size:
                job = queue.popleft()
                batch.append(job)
                rows += job.rows
            self._queued_rows -= rows
        try:
            self._predict(batch)
        finally:
            with cond:
                successor = queue[0] if queue else None
                if successor is None:
                    self._busy = False
                else:
                    successor.lead = True
            for job in batch:
                job.wake.release()
            if successor is not None:
                successor.wake.release()

    def _predict(self, batch):
        """Set each job's results or error; one model call for all when that works."""
        if len(batch) > 1:
            try:
                self._together(batch)
                return
            except Exception as exc:  # one input the model refuses must not fail the others
                log.debug("a batch of %d failed (%s): predicting each alone", len(batch), exc)
        for job in batch:
            try:
                job.results = run_outputs(self.served, job.input, job.outputs)
            except Exception as exc:
                job.error = exc

    def _together(self, batch):
        wanted = {name for job in batch for name in job.outputs}
        outputs = run_outputs(self.served, _concat([job.input for job in batch]), wanted)
        total = sum(job.rows for job in batch)
        for name, values in outputs.items():
            if len(values) != total:
                raise ValueError(f"{name} gave {len(values)} rows for {total}")
        start = 0
        for job in batch:
            end = start + job.rows
            job.results = {name: _slice(outputs[name], start, end) for name in job.outputs}
            start = end
