"""``mlhub.batch.score``: read a source in chunks, score them concurrently, write, resume.

The main thread reads chunks and writes results; a thread pool calls the model, so reading,
scoring and writing overlap while the sink and the state file see one writer. At most
``2 x concurrency`` chunks are held at once, which bounds memory whatever the source's size.
Each finished chunk is written to the sink (rejects to the rejects sink), then recorded in the
state file; see ``state`` for why that order makes a rerun lose and duplicate nothing.
"""

import hashlib
import json
import sys
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .endpoint import ModelEndpoint
from .errors import InvalidBatch
from .features import Features
from .scorer import Scorer
from .scoring import score_chunk
from .settings import BatchSettings
from .state import RunState, default_path
from .stores import ROW_KEY, open_sink, open_source

_SAMPLE = 5  # rejected rows kept in the report, as examples of the reasons


@dataclass
class Report:
    """What a run did. ``rows``/``scored``/``rejected`` count every committed chunk of the
    job, resumed ones included; ``seconds`` and ``rows_per_second`` are this run's alone."""

    model: str
    version: str | None
    source: str
    dest: str
    rejects: str
    state: str
    chunks: int = 0
    resumed_chunks: int = 0
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    rows_this_run: int = 0
    seconds: float = 0.0
    rejected_examples: list = field(default_factory=list)

    @property
    def rows_per_second(self):
        return self.rows_this_run / self.seconds if self.seconds else 0.0

    def summary(self):
        lines = [
            f"scored {self.scored:,} of {self.rows:,} rows with {self.model} "
            f"({self.version or 'unknown version'}) into {self.dest}",
            f"{self.chunks} chunks ({self.resumed_chunks} done by an earlier run); this run: "
            f"{self.rows_this_run:,} rows in {self.seconds:.1f} s, "
            f"{self.rows_per_second:,.0f} rows/s",
        ]
        if self.rejected:
            lines.append(f"{self.rejected:,} rows rejected, with the reasons, in {self.rejects}:")
            lines += [f"  {example}" for example in self.rejected_examples]
        return "\n".join(lines)


def _progress(enabled, total, description):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit=" rows",
        unit_scale=True,
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )


class _Run:
    def __init__(self, scorer, source, sink, reject_sink, state, settings, report, keys, columns):
        self.scorer, self.source, self.sink, self.reject_sink = scorer, source, sink, reject_sink
        self.state, self.settings, self.report, self.keys = state, settings, report, keys
        self.features = Features(scorer.signature, keys=keys, columns=columns)

    def _chunks(self):
        """``(chunk id, table)`` with the row-position key added when the source has none."""
        offset = 0
        for chunk_id, table in enumerate(self.source.chunks(self.settings.chunk_size)):
            missing = [k for k in self.keys if k != ROW_KEY and k not in table.column_names]
            if missing:
                raise InvalidBatch(
                    f"the key column(s) {missing} are not among the source's columns "
                    f"{table.column_names}",
                    {"missing": missing},
                )
            if self.keys == [ROW_KEY]:
                positions = np.arange(offset, offset + table.num_rows, dtype=np.int64)
                table = table.append_column(ROW_KEY, pa.array(positions))
            offset += table.num_rows
            yield chunk_id, table

    def _commit(self, result, bar):
        self.sink.write(result.chunk_id, result.output)
        if result.rejected:
            self.reject_sink.write(result.chunk_id, result.rejects)
            examples = self.report.rejected_examples
            for row in result.rejects.slice(0, _SAMPLE - len(examples)).to_pylist():
                keys = ", ".join(f"{k}={row[k]!r}" for k in self.keys)
                examples.append(f"{keys}: {row['error']}")
        self.state.commit(
            result.chunk_id, rows=result.rows, scored=result.scored, rejected=result.rejected
        )
        self.report.rows_this_run += result.rows
        self._count(self.state.committed[result.chunk_id])
        bar.update(result.rows)
        bar.set_postfix(rejected=self.report.rejected, refresh=False)

    def _count(self, record):
        self.report.chunks += 1
        self.report.rows += record["rows"]
        self.report.scored += record["scored"]
        self.report.rejected += record["rejected"]

    def _drain(self, in_flight, bar, everything=False):
        done, _ = wait(in_flight, return_when=ALL_COMPLETED if everything else FIRST_COMPLETED)
        for future in sorted(done, key=in_flight.get):
            del in_flight[future]
            self._commit(future.result(), bar)

    def run(self, bar):
        limit = 2 * self.settings.concurrency
        pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="mlhub-batch")
        in_flight = {}
        try:
            for chunk_id, table in self._chunks():
                done = self.state.committed.get(chunk_id)
                if done is not None:
                    self.report.resumed_chunks += 1
                    self._count(done)
                    bar.update(table.num_rows)
                    continue
                future = pool.submit(
                    score_chunk, self.scorer, self.features, chunk_id, table, self.keys
                )
                in_flight[future] = chunk_id
                if len(in_flight) >= limit:
                    self._drain(in_flight, bar)
            while in_flight:
                self._drain(in_flight, bar, everything=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self.state.finish()


def _names(value):
    if value is None or isinstance(value, (list, tuple)):
        return list(value) if value else None
    return [v.strip() for v in value.split(",") if v.strip()]


def score(
    model,
    source,
    dest,
    *,
    query=None,
    table=None,
    path=None,
    key=None,
    columns=None,
    rejects=None,
    state=None,
    restart=False,
    token=None,
    url=None,
    progress=True,
    **settings,
):
    """Score every row of ``source`` with ``model`` and write the results to ``dest``.

    ``model``: ``"user/name"``, ``"name"`` (yours), an endpoint URL, or a ``Scorer``.
    ``source``: a SQL, Redis or file URL, with ``query``/``table`` (SQL), ``table`` (a Redis
    key pattern) or ``path`` (files under the URL). ``dest``: ``sqlite:///o.db?table=T``,
    ``postgresql://.../db?table=T``, ``redis://host/0?prefix=P`` or a folder URL.
    ``key``: columns that identify a row (a list or ``"a,b"``; default: the table's primary
    key, the Redis key, or the row's position in files). ``columns``: the model's input
    columns, in order, when their names do not match the model's. ``rejects``: where rejected
    rows go (default: beside ``dest``). ``state``: the state file (default
    ``.mlhub-batch/<job>.jsonl``); ``restart``: ignore an unfinished run and start over.
    ``token`` (default ``$MLHUB_TOKEN``/``$JUPYTERHUB_API_TOKEN``) may be an API key; ``url``
    is the hub (default ``$MLHUB_URL``). ``settings``: ``BatchSettings`` fields
    (``chunk_size``, ``concurrency``, ``timeout``, ``retries``).

    Returns a ``Report``. Rejected rows do not fail the run; an unreachable model, a store
    error or an interruption does, and the same call resumes it.
    """
    settings = BatchSettings.from_options(settings)
    columns = _names(columns)
    if isinstance(model, Scorer):
        scorer = model
    else:
        scorer = ModelEndpoint.resolve(model, url=url, token=token, settings=settings)
    opened = [scorer]
    try:
        src = open_source(source, query=query, table=table, path=path, keys=_names(key))
        opened.append(src)
        keys = src.keys or [ROW_KEY]
        sink = open_sink(dest, keys=keys)
        opened.append(sink)
        reject_sink = open_sink(rejects, keys=keys) if rejects else sink.rejects()
        opened.append(reject_sink)
        job = {
            "model": model if isinstance(model, str) else scorer.name,
            "source": src.describe(),
            "dest": sink.describe(),
            "keys": keys,
            "columns": columns,
            "chunk_size": settings.chunk_size,
        }
        job_id = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()
        run_state = RunState(
            state or default_path(job_id),
            job_id=job_id,
            job=job,
            version=scorer.version,
            restart=restart,
        )
        if run_state.fresh:
            sink.clear()
            reject_sink.clear()
        report = Report(
            model=job["model"],
            version=scorer.version,
            source=job["source"],
            dest=job["dest"],
            rejects=reject_sink.describe(),
            state=str(run_state.path),
        )
        run = _Run(scorer, src, sink, reject_sink, run_state, settings, report, keys, columns)
        started = time.perf_counter()
        with _progress(progress, src.count(), f"scoring with {scorer.name}") as bar:
            try:
                run.run(bar)
            finally:
                report.seconds = time.perf_counter() - started
        return report
    finally:
        for thing in reversed(opened):
            thing.close()
