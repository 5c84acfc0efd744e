"""Where rows come from and where results go: one small base class each, and the URL dispatch.

A ``Source`` yields Arrow record batches in a *stable order*, so chunk N holds the same rows on
every run: that is what lets an interrupted run resume by chunk id. A ``Sink`` writes one
chunk's results so that writing the same chunk again replaces it (per-chunk idempotence): a
chunk scored just before a kill, but not yet recorded in the state file, is simply written
again on the rerun and no row appears twice.

URLs pick the store: ``redis://`` / ``rediss://`` are Redis; a scheme SQLAlchemy has a dialect
for (``sqlite``, ``postgresql``, ...) is SQL; anything else (a local path, ``file://``,
``s3://``, ``memory://``, any fsspec URL) is data-lake files.
"""

from collections.abc import Iterator
from urllib.parse import urlsplit

import pyarrow as pa

from .errors import InvalidBatch

ROW_KEY = "_row"
"""The key column added when the source names none: the row's position in the source."""


class Source:
    """Rows to score, read in chunks.

    Subclasses implement ``batches`` (in a stable order) and may name the columns that
    identify a row (``keys``) and the number of rows (``count``, for the progress bar).
    """

    keys: list[str] | None = None
    """Columns that identify a row, or ``None``: the pipeline then adds ``_row``."""

    def describe(self) -> str:
        """What is read, without secrets: part of the job's identity in the state file."""
        raise NotImplementedError

    def count(self) -> int | None:
        """How many rows there are, when that is cheap to know."""
        return None

    def batches(self, size: int) -> Iterator[pa.RecordBatch | pa.Table]:
        """Record batches (of about ``size`` rows) in the same order on every run."""
        raise NotImplementedError

    def chunks(self, size: int) -> Iterator[pa.Table]:
        """Tables of exactly ``size`` rows (the last may be shorter), whatever the batch sizes
        of the underlying reader, so chunk ids do not depend on file or row-group layout."""
        pending, held = [], 0
        for batch in self.batches(size):
            if not batch.num_rows:
                continue
            pending.append(batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch]))
            held += batch.num_rows
            while held >= size:
                table = pa.concat_tables(pending, promote_options="permissive")
                yield table.slice(0, size)
                rest = table.slice(size)
                pending, held = ([rest] if rest.num_rows else []), rest.num_rows
        if held:
            yield pa.concat_tables(pending, promote_options="permissive")

    def close(self) -> None:
        pass


class Sink:
    """Where one chunk's rows are written, replacing what an earlier write of it left."""

    def describe(self) -> str:
        """Where results go, without secrets: part of the job's identity in the state file."""
        raise NotImplementedError

    def write(self, chunk_id: int, table: pa.Table) -> None:
        """Write ``table`` as chunk ``chunk_id``, atomically, replacing an earlier write."""
        raise NotImplementedError

    def clear(self) -> None:
        """Start of a fresh run: remove what an earlier run wrote that a new run would not
        replace row by row (file parts). Stores keyed by row replace rows and keep the rest."""

    def rejects(self) -> "Sink":
        """The sink of the same kind that receives rejected rows (keys, error, code, input)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def store_kind(url: str) -> str:
    """``"redis"``, ``"sql"`` or ``"lake"`` for a source or destination URL."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("redis", "rediss"):
        return "redis"
    if len(scheme) > 1 and scheme != "file":  # one letter: a Windows drive, not a scheme
        from sqlalchemy.engine.url import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(url).get_dialect()
            return "sql"
        except (ArgumentError, NoSuchModuleError):
            pass
    return "lake"


def open_source(url, *, query=None, table=None, path=None, keys=None) -> Source:
    """The source for ``url`` with one of ``query`` (SQL), ``table`` (a SQL table or a Redis
    key pattern) or ``path`` (files under the URL); ``keys``: the columns that identify a row
    (``None``: the source's own, or the row's position)."""
    given = [name for name, value in (("query", query), ("table", table), ("path", path)) if value]
    if len(given) > 1:
        raise InvalidBatch(
            f"give one of --query, --table or --path, not {' and '.join(given)}",
            {"given": given},
        )
    kind = store_kind(url)
    if kind == "sql":
        from .sql import SQLSource

        if path:
            raise InvalidBatch("a SQL source takes --query or --table, not --path")
        return SQLSource(url, query=query, table=table, keys=keys)
    if kind == "redis":
        from .redis_hashes import RedisSource

        if query or path:
            raise InvalidBatch("a Redis source takes --table KEY-PATTERN (e.g. 'wafer:*')")
        return RedisSource(url, pattern=table, keys=keys)
    from .lake import LakeSource

    if query or table:
        raise InvalidBatch(
            "a file source takes --path (a file, folder or glob under the URL), not "
            "--query/--table; for SQL give a database URL such as sqlite:///data.db"
        )
    return LakeSource(url, path=path, keys=keys)


def open_sink(url, *, keys) -> Sink:
    """The sink for ``url``; ``keys`` are the columns that identify a row in what is written."""
    kind = store_kind(url)
    if kind == "sql":
        from .sql import SQLSink

        return SQLSink(url, keys=keys)
    if kind == "redis":
        from .redis_hashes import RedisSink

        return RedisSink(url, keys=keys)
    from .lake import LakeSink

    return LakeSink(url)
