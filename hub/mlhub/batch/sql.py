"""SQL databases through SQLAlchemy: SQLite, PostgreSQL (psycopg 3) and any dialect it knows.

Source: ``--table T`` (ordered by its primary key, or ``--key``) or ``--query SQL`` (needs
``--key``: the query runs as ``SELECT * FROM (<query>) ORDER BY <key>``, so chunk N is the
same rows on every run). Rows are streamed with a server-side cursor where the driver has one.

Sink: ``--dest 'sqlite:///out.db?table=scores'`` (``table`` is mlhub's, taken off the URL
before it reaches the driver). The table is created on first write, with the key columns as
its primary key, if it does not exist. Each chunk is one transaction: delete the chunk's keys,
insert its rows. A chunk written twice therefore leaves one row per key, and a rerun of the
job replaces yesterday's scores for the same keys. Rejected rows go to ``<table>_rejects``.

``postgresql://`` URLs use psycopg 3 (``postgresql+psycopg://``), the driver mlhub installs.
"""

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine.url import make_url

from .errors import InvalidBatch, StoreError
from .stores import Sink, Source

_DELETE_SLICE = 500  # keys per DELETE statement: under every dialect's bound-parameter limit


def engine_for(url):
    """An engine for ``url``, with psycopg 3 for plain ``postgresql://``."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        engine = sa.create_engine(parsed, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot open {_safe(parsed)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        # A SQLite source and sink can be the same file: in WAL mode the source's open read
        # does not stop the sink's commits ("database is locked").
        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record):
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

    return engine


def _safe(url):
    return url.render_as_string(hide_password=True)


def _quote(engine, names):
    prepare = engine.dialect.identifier_preparer.quote
    return ", ".join(prepare(n) for n in names)


def _reflect(engine, name):
    schema, _, table = name.rpartition(".")
    try:
        return sa.Table(table, sa.MetaData(), schema=schema or None, autoload_with=engine)
    except sa.exc.NoSuchTableError:
        return None
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot read the table {name!r}: {exc}", {"table": name}) from exc


class SQLSource(Source):
    def __init__(self, url, *, query=None, table=None, keys=None):
        if not (query or table):
            raise InvalidBatch("a SQL source needs --query SQL or --table NAME")
        self.engine = engine_for(url)
        self.url = _safe(self.engine.url)
        self.query = query
        self.table = None
        if table:
            self.table = _reflect(self.engine, table)
            if self.table is None:
                raise InvalidBatch(f"there is no table {table!r} in {self.url}", {"table": table})
            keys = keys or [c.name for c in self.table.primary_key.columns] or None
            if not keys:
                raise InvalidBatch(
                    f"the table {table!r} has no primary key: name the columns that identify "
                    "a row with --key (chunks are read in key order, so a rerun can resume)",
                    {"table": table},
                )
        elif not keys:
            raise InvalidBatch(
                "a SQL --query needs --key: the columns that identify a row (the query is read "
                "in key order, so a rerun can resume, and results carry the key)",
                {"field": "key"},
            )
        self.keys = list(keys)

    def describe(self):
        what = f"table {self.table.fullname}" if self.table is not None else f"query {self.query}"
        return f"sql {self.url} {what}"

    def _statement(self):
        order = _quote(self.engine, self.keys)
        if self.table is not None:
            return sa.select(self.table).order_by(sa.text(order))
        query = self.query.strip().rstrip(";")
        return sa.text(f"SELECT * FROM ({query}) AS mlhub_source ORDER BY {order}")

    def count(self):
        if self.table is None:
            return None  # counting would run the whole query once more
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar()

    def batches(self, size):
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=size).execute(
                    self._statement()
                )
                names = list(result.keys())
                missing = [k for k in self.keys if k not in names]
                if missing:
                    raise InvalidBatch(
                        f"the key column(s) {missing} are not in the query's columns {names}",
                        {"missing": missing},
                    )
                for rows in result.partitions(size):
                    columns = list(zip(*rows, strict=True))
                    yield pa.Table.from_arrays([pa.array(c) for c in columns], names=names)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot read {self.describe()}: {exc}") from exc

    def close(self):
        self.engine.dispose()


def _column_type(arrow_type):
    """The SQL column type for an Arrow type (lists and structs are stored as JSON)."""
    t = pa.types
    if t.is_boolean(arrow_type):
        return sa.Boolean()
    if t.is_integer(arrow_type):
        return sa.BigInteger()
    if t.is_floating(arrow_type):
        return sa.Double()
    if t.is_decimal(arrow_type):
        return sa.Numeric(arrow_type.precision, arrow_type.scale)
    if t.is_timestamp(arrow_type):
        return sa.DateTime(timezone=arrow_type.tz is not None)
    if t.is_date(arrow_type):
        return sa.Date()
    if t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_null(arrow_type):
        return sa.Text()
    return sa.JSON()


class SQLSink(Sink):
    def __init__(self, url, *, keys, table=None):
        parsed = make_url(url)
        name = table or parsed.query.get("table")
        if not name:
            raise InvalidBatch(
                f"say which table receives the results: add ?table=NAME to {_safe(parsed)}",
                {"field": "dest"},
            )
        self.engine = engine_for(parsed.difference_update_query(["table"]))
        self.url = _safe(self.engine.url)
        self.name = name
        self.keys = list(keys)
        self.table = None

    def describe(self):
        return f"sql {self.url} table {self.name}"

    def _target(self, arrow_schema):
        """The destination table: reflected, or created from the first chunk's columns."""
        if self.table is not None:
            return self.table
        table = _reflect(self.engine, self.name)
        if table is None:
            schema, _, short = self.name.rpartition(".")
            columns = [
                sa.Column(
                    field.name,
                    _column_type(field.type),
                    primary_key=field.name in self.keys,
                    nullable=field.name not in self.keys,
                )
                for field in arrow_schema
            ]
            table = sa.Table(short, sa.MetaData(), *columns, schema=schema or None)
            table.create(self.engine, checkfirst=True)
        missing = [n for n in arrow_schema.names if n not in table.c]
        if missing:
            raise InvalidBatch(
                f"the table {self.name!r} has no column(s) {missing}: drop it or pick another "
                "with ?table=",
                {"table": self.name, "missing": missing},
            )
        self.table = table
        return table

    def write(self, chunk_id, table):
        try:
            target = self._target(table.schema)
            key_columns = [target.c[k] for k in self.keys]
            keys = list(zip(*(table.column(k).to_pylist() for k in self.keys), strict=True))
            with self.engine.begin() as conn:
                for start in range(0, len(keys), _DELETE_SLICE):
                    part = keys[start : start + _DELETE_SLICE]
                    if len(key_columns) == 1:
                        match = key_columns[0].in_([k[0] for k in part])
                    else:
                        match = sa.tuple_(*key_columns).in_(part)
                    conn.execute(target.delete().where(match))
                if table.num_rows:
                    conn.execute(target.insert(), table.to_pylist())
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot write chunk {chunk_id} to {self.describe()}: {exc}") from exc

    def rejects(self):
        return SQLSink(
            str(self.engine.url.render_as_string(hide_password=False)),
            keys=self.keys,
            table=f"{self.name}_rejects",
        )

    def close(self):
        self.engine.dispose()
