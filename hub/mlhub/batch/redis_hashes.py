"""Redis as the NoSQL store: rows are hashes, one per key.

Source: ``--source redis://host:6379/0 --table 'wafer:*'`` reads every hash whose key matches
the pattern, in key order (the keys are listed once with SCAN and sorted, so chunk N is the
same hashes on every run). Each field is a column, and the hash's key is the column ``_key``.
Redis stores text: the pipeline converts the fields the model reads to the types of its
signature.

Sink: ``--dest 'redis://host:6379/0?prefix=score:'`` writes each result row as the hash
``<prefix><key>`` (key columns joined with ``:``; ``_key`` itself for a Redis source), its
fields the result columns (numbers and lists as JSON text). Each chunk is one MULTI/EXEC
transaction; HSET overwrites, so a chunk written twice leaves the same hashes. ``?prefix=``
(empty) adds the prediction to the source hashes themselves. Rejected rows go to
``<prefix>rejects:<key>``.
"""

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import pyarrow as pa
import redis

from .errors import InvalidBatch, StoreError
from .stores import Sink, Source

KEY = "_key"
_SCAN_COUNT = 1000


def _split_prefix(url):
    """(URL without mlhub's ``prefix`` parameter, the prefix or ``None``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), None)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def _safe(url):
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def _client(url):
    try:
        return redis.Redis.from_url(url, decode_responses=True)
    except ValueError as exc:
        raise InvalidBatch(f"{_safe(url)} is not a Redis URL: {exc}") from exc


def _text(value):
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class RedisSource(Source):
    def __init__(self, url, *, pattern, keys=None):
        if not pattern:
            raise InvalidBatch(
                "a Redis source needs --table KEY-PATTERN, e.g. --table 'wafer:*' for the "
                "hashes wafer:1, wafer:2, ...",
                {"field": "table"},
            )
        self.url = _safe(url)
        self.client = _client(url)
        self.pattern = pattern
        self.keys = list(keys or [KEY])
        self._names = None

    def describe(self):
        return f"redis {self.url} hashes {self.pattern}"

    def _key_names(self):
        if self._names is None:
            try:
                found = self.client.scan_iter(match=self.pattern, count=_SCAN_COUNT, _type="HASH")
                self._names = sorted(found)
            except redis.RedisError as exc:
                raise StoreError(f"cannot list {self.describe()}: {exc}") from exc
        return self._names

    def count(self):
        return len(self._key_names())

    def batches(self, size):
        names = self._key_names()
        for start in range(0, len(names), size):
            part = names[start : start + size]
            try:
                pipe = self.client.pipeline(transaction=False)
                for name in part:
                    pipe.hgetall(name)
                rows = pipe.execute()
            except redis.RedisError as exc:
                raise StoreError(f"cannot read {self.describe()}: {exc}") from exc
            fields = list(dict.fromkeys(f for row in rows for f in row))
            columns = {KEY: pa.array(part, pa.string())}
            for f in fields:
                columns[f] = pa.array([row.get(f) for row in rows], pa.string())
            yield pa.table(columns)

    def close(self):
        self.client.close()


class RedisSink(Sink):
    def __init__(self, url, *, keys, prefix=None):
        self.url, given = _split_prefix(url)
        self.prefix = prefix if prefix is not None else given
        if self.prefix is None:
            raise InvalidBatch(
                f"say where results go: add ?prefix=score: to {_safe(self.url)} to write the "
                "hashes score:<key> (an empty ?prefix= adds the fields to the source hashes)",
                {"field": "dest"},
            )
        self.client = _client(self.url)
        self.keys = list(keys)

    def describe(self):
        return f"redis {_safe(self.url)} prefix {self.prefix}"

    def write(self, chunk_id, table):
        keys = [table.column(k).to_pylist() for k in self.keys]
        values = {c: table.column(c).to_pylist() for c in table.column_names if c != KEY}
        try:
            pipe = self.client.pipeline(transaction=True)
            for i, key in enumerate(zip(*keys, strict=True)):
                mapping = {c: _text(v[i]) for c, v in values.items() if v[i] is not None}
                if mapping:
                    pipe.hset(self.prefix + ":".join(_text(k) for k in key), mapping=mapping)
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"cannot write chunk {chunk_id} to {self.describe()}: {exc}") from exc

    def rejects(self):
        return RedisSink(self.url, keys=self.keys, prefix=f"{self.prefix}rejects:")

    def close(self):
        self.client.close()
