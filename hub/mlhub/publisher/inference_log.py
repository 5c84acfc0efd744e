"""The inference log's store: the sampled requests of models that keep one, as rows a user
reads back as a DataFrame (``mlhub.inference_log``).

The serving runtimes send batches (``mlhub.serving.inferencelog``); the publisher turns each
request into one row per input row (``rows_from_batch``) and hands them to a backend:

- ``SQLInferenceLog`` (default): a table in the publisher's own database, SQLite or PostgreSQL,
  indexed by model and time, so it needs nothing more than the publisher has;
- ``ParquetInferenceLog``: Parquet files under a folder or any fsspec URL (``s3://...``), one
  file per batch, partitioned ``<owner>/<name>/day=YYYY-MM-DD/version=<12 hex>/``, which
  Spark, DuckDB and ``pyarrow.dataset`` read as they are (needs ``mlhub[batch]``).

A row: ``time`` (UTC), ``version``, ``request`` (an id shared by the rows of one request),
``row`` (its index in the request), ``status`` (the HTTP status answered), ``latency_ms``,
``inputs`` (the row as the model got it: an object of named inputs, or a list), ``outputs``
(the model's prediction for it; null when the request was refused) and ``error`` (the refusal's
message). Both backends expire rows older than ``InferenceLogStore.retention_days``.

Backends run in a worker thread (``asyncio.to_thread``): they block, the publisher's loop does
not wait for them.
"""

import datetime
import json
import uuid

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)
from traitlets import Integer as IntegerTrait
from traitlets.config import LoggingConfigurable

from mlhub.errors import BadRequest

MAX_READ_ROWS = 100_000  # one answer of GET .../inference-log holds at most this many rows


def _utc(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(tzinfo=None)


def _rows_of(value, count):
    """The ``count`` per-row items of a request's inputs or outputs as the runtime sent them: a
    list of rows, a dict of columns (a DataFrame written as records already is a list), or one
    value for a single row."""
    if isinstance(value, list) and len(value) == count:
        return value
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        columns = list(value.items())
        if all(len(v) == count for _, v in columns):
            return [{k: v[i] for k, v in columns} for i in range(count)]
    return [value] * count if count == 1 else [None] * count


def rows_from_batch(batch):
    """The rows of one batch the runtime sent (``{"version", "requests": [...]}``); a batch that
    is not one gets a 400 saying what is wrong."""
    if not isinstance(batch, dict) or not isinstance(batch.get("requests"), list):
        raise BadRequest('an inference log batch is {"version": ..., "requests": [...]}')
    version = batch.get("version")
    rows = []
    for req in batch["requests"]:
        try:
            when = _utc(float(req["time"]))
            status, latency = int(req["status"]), float(req["ms"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"an inference log request lacks {exc}: time, status, ms") from None
        inputs = req.get("inputs")
        count = len(inputs) if isinstance(inputs, list) and inputs else 1
        request_id = uuid.uuid4().hex[:16]
        outputs = _rows_of(req.get("outputs"), count)
        inputs = inputs if isinstance(inputs, list) and inputs else [inputs]
        for i in range(count):
            rows.append(
                {
                    "time": when,
                    "version": version,
                    "request": request_id,
                    "row": i,
                    "status": status,
                    "latency_ms": latency,
                    "inputs": inputs[i],
                    "outputs": outputs[i],
                    "error": req.get("error"),
                }
            )
    return rows


class InferenceLogStore(LoggingConfigurable):
    """Base class: where a model's inference log rows are kept (see the module)."""

    retention_days = IntegerTrait(
        30,
        help="""Days an inference log row is kept; older rows are deleted (checked every hour).
        Default 30; 0 keeps them for ever.""",
    ).tag(config=True)

    def write(self, model, rows):
        """Keep ``rows`` (``rows_from_batch``) of ``model`` (a ``ModelRef``)."""
        raise NotImplementedError

    def read(self, model, *, since=None, until=None, version=None, limit=MAX_READ_ROWS):
        """``model``'s rows with ``since <= time < until`` (naive UTC datetimes, None: open),
        of ``version`` if given, oldest first, at most ``limit`` (the newest of them)."""
        raise NotImplementedError

    def expire(self, before):
        """Delete every row older than ``before`` (naive UTC); return how many went (rows; for
        Parquet, whole days: the day partitions before ``before``'s day)."""
        raise NotImplementedError

    def drop(self, model):
        """Delete every row of ``model`` (it was deleted)."""
        raise NotImplementedError

    def expire_old(self, now=None):
        """Apply ``retention_days``; return what ``expire`` deleted."""
        if not self.retention_days:
            return 0
        now = now or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        return self.expire(now - datetime.timedelta(days=self.retention_days))


class ModelRows:
    """A table of the publisher's database whose rows belong to a model and a time (the
    inference log's, the shadow's comparisons): write, read oldest first, expire, drop."""

    def __init__(self, engine, name, *columns):
        self.engine = engine
        meta = MetaData()
        self.table = Table(
            name,
            meta,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("model", String(320), nullable=False),
            Column("time", DateTime, nullable=False),
            *columns,
            Index(f"ix_{name}_model_time", "model", "time"),
            Index(f"ix_{name}_time", "time"),
        )
        meta.create_all(engine)

    def write(self, model, rows):
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(self.table), [{"model": model.key, **r} for r in rows])

    def read(self, model, *, since=None, until=None, limit=MAX_READ_ROWS, **equal):
        """``model``'s rows with ``since <= time < until`` and the ``equal`` column values,
        oldest first, at most ``limit`` (the newest of them)."""
        t = self.table
        query = select(t).where(t.c.model == model.key)
        if since is not None:
            query = query.where(t.c.time >= since)
        if until is not None:
            query = query.where(t.c.time < until)
        for column, value in equal.items():
            if value is not None:
                query = query.where(t.c[column] == value)
        query = query.order_by(t.c.time.desc(), t.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            found = conn.execute(query).mappings().all()
        columns = [c.name for c in t.columns if c.name not in ("id", "model")]
        return [{c: r[c] for c in columns} for r in reversed(found)]

    def expire(self, before):
        with self.engine.begin() as conn:
            return conn.execute(delete(self.table).where(self.table.c.time < before)).rowcount

    def drop(self, model):
        with self.engine.begin() as conn:
            conn.execute(delete(self.table).where(self.table.c.model == model.key))


class SQLInferenceLog(InferenceLogStore):
    """Rows in the table ``inference_log`` of the publisher's database (its engine)."""

    def __init__(self, engine, **kwargs):
        super().__init__(**kwargs)
        self.rows = ModelRows(
            engine,
            "inference_log",
            Column("version", String(71)),
            Column("request", String(32)),
            Column("row", Integer),
            Column("status", Integer),
            Column("latency_ms", Float),
            Column("inputs", JSON),
            Column("outputs", JSON),
            Column("error", Text),
        )

    def write(self, model, rows):
        self.rows.write(model, rows)

    def read(self, model, *, since=None, until=None, version=None, limit=MAX_READ_ROWS):
        return self.rows.read(model, since=since, until=until, limit=limit, version=version)

    def expire(self, before):
        return self.rows.expire(before)

    def drop(self, model):
        self.rows.drop(model)


class ParquetInferenceLog(InferenceLogStore):
    """Rows as Parquet files under ``url`` (a folder or an fsspec URL), one file per batch."""

    def __init__(self, url, **kwargs):
        super().__init__(**kwargs)
        try:
            import fsspec
            import pyarrow  # noqa: F401 (its absence is told here, at the publisher's start)
        except ImportError as exc:
            raise RuntimeError(
                f"PublisherApp.inference_log_url={url!r} needs pyarrow and fsspec "
                "(pip install 'mlhub[batch]'); leave it empty to keep the log in the database"
            ) from exc
        self.fs, self.root = fsspec.core.url_to_fs(url)

    def _model_dir(self, model):
        return f"{self.root.rstrip('/')}/{model.owner_dir}/{model.name}"

    def write(self, model, rows):
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_partition = {}
        for r in rows:
            day = r["time"].strftime("%Y-%m-%d")
            label = (r["version"] or "unknown").split(":")[-1][:12]
            by_partition.setdefault((day, label), []).append(r)
        for (day, label), part in by_partition.items():
            table = pa.table(
                {
                    "time": pa.array([r["time"] for r in part], pa.timestamp("us")),
                    "version": [r["version"] for r in part],
                    "request": [r["request"] for r in part],
                    "row": pa.array([r["row"] for r in part], pa.int32()),
                    "status": pa.array([r["status"] for r in part], pa.int16()),
                    "latency_ms": [r["latency_ms"] for r in part],
                    "inputs": [json.dumps(r["inputs"]) for r in part],
                    "outputs": [json.dumps(r["outputs"]) for r in part],
                    "error": [r["error"] for r in part],
                }
            )
            folder = f"{self._model_dir(model)}/day={day}/version={label}"
            self.fs.makedirs(folder, exist_ok=True)
            name = f"{part[0]['time']:%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
            with self.fs.open(f"{folder}/{name}", "wb") as out:
                pq.write_table(table, out)

    def _days(self, model):
        """``[(day, folder)]`` of ``model``'s partitions, oldest first."""
        try:
            entries = self.fs.ls(self._model_dir(model), detail=False)
        except FileNotFoundError:
            return []
        days = []
        for path in entries:
            leaf = path.rstrip("/").rsplit("/", 1)[-1]
            if leaf.startswith("day="):
                days.append((leaf[4:], path))
        return sorted(days)

    def read(self, model, *, since=None, until=None, version=None, limit=MAX_READ_ROWS):
        import pyarrow.parquet as pq

        first = since.strftime("%Y-%m-%d") if since else ""
        last = until.strftime("%Y-%m-%d") if until else "9999"
        rows = []
        for day, folder in self._days(model):
            if not first <= day <= last:
                continue
            for path in sorted(self.fs.find(folder)):
                if not path.endswith(".parquet"):
                    continue
                with self.fs.open(path, "rb") as fh:
                    for r in pq.read_table(fh).to_pylist():
                        if since is not None and r["time"] < since:
                            continue
                        if until is not None and r["time"] >= until:
                            continue
                        if version is not None and r["version"] != version:
                            continue
                        r["inputs"] = json.loads(r["inputs"])
                        r["outputs"] = json.loads(r["outputs"])
                        rows.append(r)
        rows.sort(key=lambda r: r["time"])
        return rows[-limit:]

    def expire(self, before):
        cutoff = before.strftime("%Y-%m-%d")
        gone = 0
        for owner_dir in self.fs.ls(self.root, detail=False) if self.fs.exists(self.root) else []:
            for model_dir in self.fs.ls(owner_dir, detail=False):
                for path in self.fs.ls(model_dir, detail=False):
                    leaf = path.rstrip("/").rsplit("/", 1)[-1]
                    if leaf.startswith("day=") and leaf[4:] < cutoff:
                        self.fs.rm(path, recursive=True)
                        gone += 1
        return gone

    def drop(self, model):
        if self.fs.exists(self._model_dir(model)):
            self.fs.rm(self._model_dir(model), recursive=True)
