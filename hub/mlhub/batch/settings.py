"""How a batch run reads, calls and retries: one dataclass, every field with its default.

``mlhub batch`` flags and ``mlhub.batch.score(**settings)`` keyword arguments set these fields.
"""

from dataclasses import dataclass, fields

from .errors import InvalidBatch


@dataclass(frozen=True)
class BatchSettings:
    chunk_size: int = 50_000
    """Rows per chunk: one request to the model, one committed unit of the state file and one
    idempotent write to the sink. 50,000 rows of 20 numbers is about 8 MB as Arrow. Each request
    costs a few ms besides the model's own time (and, through uWSGI's HTTP router, often a
    ~40 ms delayed-ACK stall on the answer), so bigger chunks come closer to the in-process
    rate (``bench/batch.py``: 0.44 of it with 10,000 rows, 0.84 with 50,000). A chunk must be
    scored within the server's request timeout (``MLHUB_REQUEST_TIMEOUT``, 60 s): 50,000 rows
    fit for any model scoring over ~1,000 rows/s; use smaller chunks for slower ones. A chunk
    whose request would exceed ``max_request_bytes``, or that the server refuses as too large
    (413), is split in halves, so this is never a hard limit."""

    concurrency: int = 4
    """Requests in flight at once. Twice the model's workers keeps every worker busy while the
    answers travel; more only queues in the server."""

    timeout: float = 120.0
    """Seconds to wait for one model answer before the request counts as failed (and retried)."""

    retries: int = 5
    """Attempts after the first for a request that failed with a connection error, a timeout,
    429 or a 5xx (the model restarting or updating): waits 0.5 s, 1 s, 2 s ... up to 10 s.
    After the last one the run stops with ``ModelUnreachable``; rerun to resume."""

    max_request_bytes: int = 8 * 1024 * 1024
    """Largest request body sent. A chunk whose body would be larger is split in halves before
    sending (never refused), because a server closes the connection on a body over its limit
    (``MLHUB_MAX_BODY_BYTES``, 16 MB by default) before the client can read its 413. Keep it
    under the server's limit."""

    def __post_init__(self):
        for name in ("chunk_size", "concurrency", "max_request_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidBatch(
                    f"{name} must be a whole number of at least 1, not {value!r}",
                    {"field": name, "value": value},
                )
        if self.retries < 0 or self.timeout <= 0:
            raise InvalidBatch("retries must be >= 0 and timeout > 0", {"field": "settings"})

    @classmethod
    def from_options(cls, options):
        """Settings from keyword arguments; an unknown name is an error that lists the known."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidBatch(
                f"unknown batch setting(s) {', '.join(unknown)}; the settings are "
                f"{', '.join(sorted(known))}",
                {"unknown": unknown},
            )
        return cls(**{k: v for k, v in options.items() if v is not None})
