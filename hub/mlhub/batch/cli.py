"""``mlhub batch``: score a table with a published model from a terminal (or a Kubernetes Job).

``mlhub.cli`` registers it with ``add_batch_parser(subparsers)`` and runs it with
``run_batch(args)``. Progress (rows, rows/s, rejected) goes to stderr, the summary to stdout.
Exit status: 0 when every chunk was written (rejected rows included, they are reported),
1 when the run stopped (rerun the same command to resume).
"""

import argparse
import json
import sys
from dataclasses import asdict, fields

from .run import score
from .settings import BatchSettings

DESCRIPTION = """\
Read rows from a SQL database, data-lake files or Redis in chunks, score them on a published
model (concurrently, with keep-alive connections) and write each row's prediction with its key.
Rerunning an interrupted command resumes it: no chunk is written twice or lost. Rows the model
refuses are written, with the server's reason, to a rejects table/folder beside --dest.

examples:
  mlhub batch --model alice/defect-rf --source sqlite:///fab.db --table wafers \\
      --dest 'sqlite:///fab.db?table=defect_scores'
  mlhub batch --model alice/defect-rf --source postgresql://me@db/fab \\
      --query 'SELECT * FROM wafers WHERE day = CURRENT_DATE' --key wafer_id \\
      --dest 'postgresql://me@db/fab?table=defect_scores'
  mlhub batch --model alice/defect-rf --source s3://lake/wafers --path '2026/*.parquet' \\
      --dest s3://lake/scores/defect-rf
  mlhub batch --model alice/defect-rf --source redis://cache:6379/0 --table 'wafer:*' \\
      --dest 'redis://cache:6379/0?prefix=score:'
"""


def _setting_help(name):
    """Help that points at the setting's documented default (``BatchSettings`` holds both)."""
    return f"default {getattr(BatchSettings(), name)} (see BatchSettings.{name})"


def add_batch_parser(subparsers):
    """Add the ``batch`` command to an argparse ``subparsers``."""
    p = subparsers.add_parser(
        "batch",
        help="score a table, files or Redis hashes with a published model",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="user/name, name (yours) or an endpoint URL")
    p.add_argument(
        "--source",
        required=True,
        metavar="URL",
        help="sqlite:///f.db, postgresql://..., redis://host:port/db, or a file/folder URL "
        "(local path, file://, s3://, any fsspec URL)",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--query", metavar="SQL", help="SQL source: a query (needs --key)")
    what.add_argument(
        "--table", metavar="T", help="SQL source: a table; Redis: a key pattern ('wafer:*')"
    )
    what.add_argument("--path", metavar="P", help="file source: a file, folder or glob under URL")
    p.add_argument(
        "--dest",
        required=True,
        metavar="URL",
        help="'sqlite:///o.db?table=T', 'postgresql://...?table=T', 'redis://...?prefix=P' or a "
        "folder URL (Parquet parts; a name ending in .jsonl: JSON Lines parts)",
    )
    p.add_argument(
        "--key",
        metavar="COL,...",
        help="columns that identify a row (default: the table's primary key, the Redis key, "
        "or the row's position in files)",
    )
    p.add_argument(
        "--columns",
        metavar="COL,...",
        help="the model's input columns, in order, when their names differ from the model's",
    )
    p.add_argument("--rejects", metavar="URL", help="where rejected rows go (default: by --dest)")
    p.add_argument(
        "--state", metavar="FILE", help="state file for resuming (default: .mlhub-batch/<job>)"
    )
    p.add_argument("--restart", action="store_true", help="ignore an unfinished run, start over")
    p.add_argument("--chunk-size", type=int, metavar="N", help=_setting_help("chunk_size"))
    p.add_argument("--concurrency", type=int, metavar="N", help=_setting_help("concurrency"))
    p.add_argument("--timeout", type=float, metavar="S", help=_setting_help("timeout"))
    p.add_argument("--retries", type=int, metavar="N", help=_setting_help("retries"))
    p.add_argument(
        "--max-request-bytes", type=int, metavar="B", help=_setting_help("max_request_bytes")
    )
    p.add_argument("--url", help="mlhub URL (default: $MLHUB_URL or http://127.0.0.1:8000)")
    p.add_argument(
        "--token",
        help="API key or JupyterHub token (default: $MLHUB_TOKEN or $JUPYTERHUB_API_TOKEN)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    k8s = p.add_argument_group(
        "Kubernetes", "print this command as a Job (or CronJob) manifest instead of running it"
    )
    k8s.add_argument("--k8s-job", metavar="NAME", help="print a Job named NAME (YAML)")
    k8s.add_argument("--image", help="the image with mlhub (e.g. the serving-python image)")
    k8s.add_argument("--schedule", metavar="CRON", help="a CronJob on this schedule")
    k8s.add_argument("--namespace", help="the Job's namespace")
    k8s.add_argument(
        "--token-secret",
        metavar="SECRET:KEY",
        help="the Secret key holding the token (MLHUB_TOKEN in the pod)",
    )
    k8s.add_argument("--state-claim", metavar="PVC", help="a PVC for the state file")
    p.set_defaults(func=run_batch)
    return p


# Options passed through to the Job's command line as they were given.
_PASSED = ("query", "table", "path", "key", "columns", "rejects", "url")
_PASSED += tuple(f.name for f in fields(BatchSettings))


def print_job(args, out=None):
    """Print the run as a Kubernetes manifest (``make_batch_job``); secrets stay in Secrets."""
    import yaml

    from .errors import InvalidBatch
    from .kubernetes import make_batch_job

    if not args.image:
        raise InvalidBatch("--k8s-job needs --image: the image the Job runs mlhub batch in")
    if args.token:
        raise InvalidBatch("a token never goes into a manifest: use --token-secret SECRET:KEY")
    passed = []
    for name in _PASSED:
        value = getattr(args, name)
        if value is not None:
            passed += [f"--{name.replace('_', '-')}", str(value)]
    if args.restart:
        passed.append("--restart")
    secret_env = {}
    if args.token_secret:
        secret, _, key = args.token_secret.partition(":")
        secret_env["MLHUB_TOKEN"] = (secret, key or "token")
    manifest = make_batch_job(
        args.k8s_job,
        image=args.image,
        model=args.model,
        source=args.source,
        dest=args.dest,
        args=passed,
        namespace=args.namespace,
        schedule=args.schedule,
        secret_env=secret_env,
        state_claim=args.state_claim,
    )
    (out or sys.stdout).write(yaml.safe_dump(manifest, sort_keys=False))
    return 0


def run_batch(args):
    if args.k8s_job:
        return print_job(args)
    settings = {f.name: getattr(args, f.name) for f in fields(BatchSettings)}
    try:
        report = score(
            args.model,
            args.source,
            args.dest,
            query=args.query,
            table=args.table,
            path=args.path,
            key=args.key,
            columns=args.columns,
            rejects=args.rejects,
            state=args.state,
            restart=args.restart,
            token=args.token,
            url=args.url,
            progress=not args.no_progress,
            **settings,
        )
    except KeyboardInterrupt:
        print(
            "mlhub: interrupted; the chunks written so far are kept: rerun the same command "
            "to resume",
            file=sys.stderr,
        )
        return 130
    if args.json:
        print(json.dumps(asdict(report) | {"rows_per_second": report.rows_per_second}))
    else:
        print(report.summary())
    sys.stdout.flush()
    return 0
