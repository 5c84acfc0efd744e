"""Which chunks of a job are committed, so a rerun resumes instead of starting over.

The state file is JSON Lines: a header naming the job, then one line per committed chunk,
appended and fsynced *after* the chunk's results are in the sink, then ``{"done": true}``.
A kill can therefore only lose the record of a chunk already written, never the chunk: the
rerun scores it again and the sink's per-chunk idempotent write replaces it, so every row is
written exactly once. A line cut short by a kill is dropped when the file is read.

A rerun of a finished job starts a fresh run (a scheduled job scores its source again); a rerun
of an unfinished one resumes, unless ``restart`` is asked for. A state file that names another
job, or a model whose version changed since the interrupted run began, is refused: chunks of
two jobs or two versions must not be mixed silently.
"""

import json
import os
import time
from pathlib import Path

from .errors import StateMismatch

DEFAULT_DIR = ".mlhub-batch"


def default_path(job_id):
    """Where a job keeps its state when no ``--state`` is given: in the working directory, so
    rerunning the same command from the same place resumes."""
    return Path(DEFAULT_DIR) / f"{job_id[:16]}.jsonl"


def _read(path):
    """The records of a state file, without a last line cut short by a kill."""
    records = []
    with open(path, "rb") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except ValueError:
                break  # only an interrupted append leaves a broken line, and it is the last
    return records


class RunState:
    """The state of one job's current run; ``committed`` maps chunk id -> its counts."""

    def __init__(self, path, *, job_id, job, version, restart=False):
        self.path = Path(path)
        self.job_id = job_id
        self.committed = {}
        records = _read(self.path) if self.path.exists() else []
        header = records[0] if records else None
        if header and not restart and header.get("job_id") != job_id:
            raise StateMismatch(
                f"the state file {self.path} belongs to another job ({header.get('job')}); "
                "give another --state, or --restart to overwrite it",
                {"state": str(self.path), "job": header.get("job")},
            )
        if header and not restart and not any(r.get("done") for r in records):
            self._resume(header, records[1:], version)
        else:
            self._start(job, version)

    def _resume(self, header, records, version):
        if header.get("version") != version:
            raise StateMismatch(
                f"the model changed version since this run began ({header.get('version')} -> "
                f"{version}): --restart scores everything with the new version",
                {"was": header.get("version"), "now": version},
            )
        self.fresh = False
        self.committed = {r["chunk"]: r for r in records if "chunk" in r}
        with open(self.path, "rb+") as fh:  # drop a line a kill cut short, before appending
            data = fh.read()
            fh.truncate(data.rfind(b"\n") + 1)

    def _start(self, job, version):
        self.fresh = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = {"job_id": self.job_id, "job": job, "version": version, "started": time.time()}
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(header) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)

    def _append(self, record):
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def commit(self, chunk_id, *, rows, scored, rejected):
        """Record chunk ``chunk_id`` as written (call after the sink write returned)."""
        record = {"chunk": chunk_id, "rows": rows, "scored": scored, "rejected": rejected}
        self._append(record)
        self.committed[chunk_id] = record

    def finish(self):
        self._append({"done": True, "finished": time.time()})
