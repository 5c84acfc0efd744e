"""What the pipeline scores with: a model that turns a table of inputs into predictions.

``ModelEndpoint`` (a published model over HTTP) is the one mlhub uses; the benchmark passes an
in-process model through the very same pipeline to measure what HTTP costs, and unit tests pass
fakes. Anything with these attributes and ``predict`` works.
"""

from collections.abc import Sequence

import pyarrow as pa

ROW_STATUSES = frozenset({400, 413, 422})
"""Statuses that blame the rows sent (invalid input, too large, the model raised on them):
the pipeline splits the chunk to find the rows at fault and scores the others. Any other
failure stops the run."""


class Scorer:
    name: str = "model"
    """What is scored with, for messages and the job's identity in the state file."""

    version: str | None = None
    """The model version; a run resumed against another version is refused."""

    signature: dict | None = None
    """The bundle's input signature ``{"kind": "array"|"dataframe", "inputs": [{"name",
    "type"}, ...]}``, or ``None``: then every non-key column is sent as is."""

    def predict(self, features: pa.Table) -> Sequence:
        """One prediction per row of ``features`` (columns in signature order and types).

        Rows the model refuses raise an ``mlhub.errors.MlhubError`` whose ``status`` is in
        ``ROW_STATUSES``, with the model's reason as its message."""
        raise NotImplementedError

    def close(self) -> None:
        pass
