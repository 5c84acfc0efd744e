"""Batch scoring: read a table in chunks, score it on a published model, write the results.

    import mlhub.batch

    report = mlhub.batch.score(
        "alice/defect-rf",
        "postgresql://db/fab", query="SELECT * FROM wafers", key="wafer_id",
        dest="postgresql://db/fab?table=defect_scores",
    )
    print(report.summary())

The same from a terminal: ``mlhub batch --model alice/defect-rf --source ... --dest ...``.
Sources and sinks: SQL (SQLAlchemy), data-lake files (Parquet, JSON Lines; any fsspec URL)
and Redis hashes. Runs resume after an interruption; rows the model refuses are reported with
the server's reason, never fatal.
"""

from .run import Report, score
from .scorer import Scorer
from .settings import BatchSettings

__all__ = ["BatchSettings", "Report", "Scorer", "score"]
