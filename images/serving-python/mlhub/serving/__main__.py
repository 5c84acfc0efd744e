"""Command line: serve a bundle under uWSGI, or check that a bundle will serve.

    python -m mlhub.serving --bundle DIR --port P [--workers N] [--host H] [--prefix /models/u/m]
    python -m mlhub.serving forkserver --socket PATH   (the local deployer's: forkserver.py)
    python -m mlhub.serving check --bundle DIR
    python -m mlhub.serving fetch --url URL --digest sha256:... --dest DIR
    python -m mlhub.serving container   (the serving-python image, nginx in front: container.py)

Serving execs uWSGI (the pid stays the uWSGI master). ``check`` exits 0 and prints a JSON
summary when the bundle loads and predicts its example, and exits 1 with the reason otherwise.
``fetch`` (a Kubernetes pod's init container) downloads a version's bundle from the publisher
with ``$MLHUB_BUNDLE_TOKEN`` and verifies it; see ``fetch.py``.
"""

import argparse
import os
import sys

from mlhub.errors import MlhubError

from .settings import SettingsError


def _serve(argv):
    parser = argparse.ArgumentParser(
        prog="python -m mlhub.serving",
        description="Serve a model bundle with uWSGI (the serving contract of docs/design.md). "
        "Other settings come from MLHUB_* environment variables; see the README.",
    )
    parser.add_argument(
        "--bundle",
        default=os.environ.get("MLHUB_BUNDLE"),
        help="bundle directory (default: $MLHUB_BUNDLE)",
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    parser.add_argument(
        "--workers", type=int, help="worker processes (default: $MLHUB_WORKERS or 2)"
    )
    parser.add_argument(
        "--prefix", help="URL path prefix stripped from requests (default: $MLHUB_URL_PREFIX)"
    )
    args = parser.parse_args(argv)
    if not args.bundle:
        parser.error("--bundle is required (or set MLHUB_BUNDLE)")
    from .launch import exec_uwsgi, uwsgi_argv

    try:
        argv = uwsgi_argv(
            args.bundle,
            args.port,
            workers=args.workers,
            host=args.host,
            prefix=args.prefix,
        )
    except SettingsError as exc:
        parser.exit(2, f"mlhub.serving: {exc}\n")
    exec_uwsgi(argv)


def _check(argv):
    parser = argparse.ArgumentParser(
        prog="python -m mlhub.serving check",
        description="Load a bundle and predict its example, as the server would.",
    )
    parser.add_argument("--bundle", required=True, help="bundle directory")
    args = parser.parse_args(argv)
    from .check import check_bundle
    from .jsonio import dumps

    try:
        summary = check_bundle(args.bundle)
    except MlhubError as exc:
        print(f"mlhub.serving check: {args.bundle} will not serve: {exc.message}", file=sys.stderr)
        return 1
    sys.stdout.write(dumps(summary).decode() + "\n")
    return 0


def _fetch(argv):
    parser = argparse.ArgumentParser(
        prog="python -m mlhub.serving fetch",
        description="Download a version's bundle from the publisher, unpack and verify it.",
    )
    parser.add_argument("--url", required=True, help="the publisher's bundle URL")
    parser.add_argument("--digest", required=True, help="the version (sha256:...) expected")
    parser.add_argument("--dest", required=True, help="directory to unpack into")
    args = parser.parse_args(argv)
    token = os.environ.get("MLHUB_BUNDLE_TOKEN", "")
    if not token:
        parser.error("set MLHUB_BUNDLE_TOKEN to the model's bundle token")
    from .fetch import fetch_bundle

    try:
        fetch_bundle(args.url, args.digest, args.dest, token)
    except MlhubError as exc:
        print(f"mlhub.serving fetch: {exc.message}", file=sys.stderr)
        return 1
    print(f"mlhub.serving fetch: {args.digest} ready in {args.dest}")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        return _check(argv[1:])
    if argv[:1] == ["fetch"]:
        return _fetch(argv[1:])
    if argv[:1] == ["forkserver"]:
        from .forkserver import main as forkserver_main

        return forkserver_main(argv[1:])
    if argv[:1] == ["container"]:
        from .container import main as container_main

        return container_main(argv[1:])
    return _serve(argv)


if __name__ == "__main__":
    sys.exit(main())
