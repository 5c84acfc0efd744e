"""Errors of batch scoring, as ``mlhub.errors`` classes so the CLI and callers handle them alike.

Bad arguments (an unknown source scheme, a SQL query without ``--key``) are ``BadRequest``;
these add what only a batch run can meet: a model endpoint that stays unreachable after
retries, a state file that belongs to another job, and a source or sink that fails.
"""

from mlhub.errors import BadRequest, Conflict, MlhubError


class ModelUnreachable(MlhubError):
    """The model endpoint failed (connection error, timeout, 5xx) after every retry.

    The run stops; chunks already written stay committed, so rerunning the same command
    resumes where it stopped."""

    status = 502
    error = "model_unreachable"


class StateMismatch(Conflict):
    """The state file records another job (other model, source, destination or chunk size),
    or the model's version changed since the interrupted run began."""

    error = "state_mismatch"


class StoreError(MlhubError):
    """A source or sink could not be opened, read or written (the driver's message is kept)."""

    status = 502
    error = "store_failed"


class InvalidBatch(BadRequest):
    """The batch request itself is wrong: unknown URL scheme, missing --key, bad column."""

    error = "invalid_batch"
