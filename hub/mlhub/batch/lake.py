"""Data-lake files: Parquet and JSON Lines, on a local disk or any fsspec URL (s3://, gs://...).

Source: ``--source URL [--path P]`` names a file, a folder (every Parquet/JSON Lines file in it,
recursively, in name order; names starting with ``_`` or ``.`` are skipped, as Spark and Arrow
do) or a glob. Parquet is streamed by row group; a JSON Lines file is read whole, so that
column types come from all its rows (a streaming reader fixes them from the first block and
fails on ``1`` then ``1.5``): split very large JSON Lines data into several files.

Sink: a folder of part files, one per chunk, ``part-000012.parquet`` (or ``.jsonl`` when the
folder's name ends in ``.jsonl``/``.ndjson``). A part is written to a hidden temporary file,
flushed to disk and renamed into place, so a reader or a resumed run never sees half a chunk;
on object stores one PUT is already all-or-nothing. Rejected rows go to ``_rejects/`` inside
the folder as JSON Lines, which Parquet dataset readers skip.
"""

import os
import re

import fsspec
import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from .errors import InvalidBatch, StoreError
from .stores import Sink, Source

PARQUET = (".parquet", ".pq", ".parq")
JSONL = (".jsonl", ".ndjson", ".json")
_GLOB = re.compile(r"[*?\[]")
_PART = re.compile(r"^\.?part-\d+\.(parquet|jsonl)(\.tmp)?$")


def _format(name):
    lower = name.lower()
    if lower.endswith(PARQUET):
        return "parquet"
    if lower.endswith(JSONL):
        return "jsonl"
    return None


def _hidden(path, root):
    rel = path[len(root) :] if path.startswith(root) else path
    return any(part.startswith(("_", ".")) for part in rel.split("/") if part)


class LakeSource(Source):
    def __init__(self, url, *, path=None, keys=None):
        self.keys = list(keys) if keys else None
        self.url = url if not path else url.rstrip("/") + "/" + path.lstrip("/")
        try:
            self.fs, target = fsspec.core.url_to_fs(self.url)
            if _GLOB.search(target):
                found = self.fs.glob(target)
            elif self.fs.isdir(target):
                found = [p for p in self.fs.find(target) if not _hidden(p, target)]
            elif self.fs.exists(target):
                found = [target]
            else:
                raise InvalidBatch(f"there is no file or folder {self.url}", {"url": self.url})
        except (OSError, ValueError, ImportError) as exc:
            raise StoreError(f"cannot list {self.url}: {exc}", {"url": self.url}) from exc
        self.files = sorted(p for p in found if _format(p))
        if not self.files:
            raise InvalidBatch(
                f"{self.url} holds no Parquet ({', '.join(PARQUET)}) or JSON Lines "
                f"({', '.join(JSONL)}) file",
                {"url": self.url},
            )

    def describe(self):
        return f"files {self.url}"

    def count(self):
        if any(_format(f) != "parquet" for f in self.files):
            return None
        total = 0
        for name in self.files:
            with self.fs.open(name, "rb") as fh:
                total += pq.ParquetFile(fh).metadata.num_rows
        return total

    def batches(self, size):
        for name in self.files:
            try:
                with self.fs.open(name, "rb") as fh:
                    if _format(name) == "parquet":
                        yield from pq.ParquetFile(fh).iter_batches(batch_size=size)
                    else:
                        yield from pa_json.read_json(fh).to_batches(max_chunksize=size)
            except (OSError, pa.ArrowException) as exc:
                raise StoreError(f"cannot read {name}: {exc}", {"file": name}) from exc


class LakeSink(Sink):
    def __init__(self, url, *, format=None):
        self.url = url.rstrip("/")
        self.format = format or (
            "jsonl" if self.url.lower().endswith((".jsonl", ".ndjson")) else "parquet"
        )
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ValueError, ImportError) as exc:
            raise StoreError(f"cannot open {self.url}: {exc}", {"url": url}) from exc
        self.local = isinstance(self.fs, LocalFileSystem)
        self.made = False  # the folder is made at the first write: no empty _rejects/

    def describe(self):
        return f"files {self.url} ({self.format})"

    def _encode(self, table, fh):
        if self.format == "parquet":
            pq.write_table(table, fh)
        else:
            option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
            fh.write(b"".join(orjson.dumps(row, option=option) for row in table.to_pylist()))

    def write(self, chunk_id, table):
        name = f"part-{chunk_id:06d}.{self.format}"
        final = f"{self.root}/{name}"
        try:
            if not self.made:
                self.fs.makedirs(self.root, exist_ok=True)
                self.made = True
            if not self.local:  # an object store's PUT is all-or-nothing
                with self.fs.open(final, "wb") as fh:
                    self._encode(table, fh)
                return
            temporary = f"{self.root}/.{name}.tmp"
            with open(temporary, "wb") as fh:
                self._encode(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, final)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot write {final}: {exc}", {"file": final}) from exc

    def clear(self):
        if not self.fs.exists(self.root):
            return
        try:
            for path in self.fs.ls(self.root, detail=False):
                if _PART.match(path.rsplit("/", 1)[-1]):
                    self.fs.rm(path)
        except OSError as exc:
            raise StoreError(f"cannot clear {self.url}: {exc}", {"url": self.url}) from exc

    def rejects(self):
        return LakeSink(f"{self.url}/_rejects", format="jsonl")
