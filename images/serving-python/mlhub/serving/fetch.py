"""Fetch a bundle for a serving pod: ``python -m mlhub.serving fetch --url --digest --dest``.

In Kubernetes mode a model's pod gets its bundle from the publisher at start (its init
container runs this), so serving a new version needs no image build. The answer streams to a
temporary file, is unpacked with the same safe unpacker the publisher uses (no links, no
``..``), and must hash to ``--digest``: a pod never serves content other than the version it
was created for. The token (``$MLHUB_BUNDLE_TOKEN``) comes from the model's Secret and only
lets this model's bundles be read. Connection failures and 5xx answers are retried with backoff
(the publisher may be restarting); a 4xx is final and its message is printed.
"""

import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from mlhub.bundle import bundle_digest, unpack
from mlhub.errors import MlhubError


class FetchError(MlhubError):
    """The bundle could not be fetched or is not the version asked for."""

    error = "fetch_failed"


def _download(url, token, out, timeout):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        shutil.copyfileobj(response, out, 1 << 20)


def _reason(exc):
    try:
        return json.loads(exc.read()).get("error") or exc.reason
    except (ValueError, AttributeError, OSError):
        return exc.reason


def fetch_bundle(url, digest, dest, token, *, attempts=8, timeout=60, sleep=time.sleep):
    """Download, unpack and verify the bundle ``digest`` into ``dest``; return ``dest``."""
    dest = Path(dest)
    if dest.is_dir() and bundle_digest(dest) == digest:
        return dest  # a restarted init container: already there
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        archive = Path(tmp, "bundle.tar.gz")
        for attempt in range(1, attempts + 1):
            try:
                with open(archive, "wb") as out:
                    _download(url, token, out, timeout)
                break
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == attempts:
                    raise FetchError(
                        f"the publisher answered {exc.code} for {url}: {_reason(exc)}",
                        {"status": exc.code},
                    ) from exc
            except OSError as exc:
                if attempt == attempts:
                    raise FetchError(f"cannot reach the publisher at {url}: {exc}") from exc
            sleep(min(2 ** (attempt - 1), 15))
        unpacked = Path(tmp, "bundle")
        with open(archive, "rb") as fh:
            unpack(fh, unpacked)
        got = bundle_digest(unpacked)
        if got != digest:
            raise FetchError(
                f"the bundle fetched from {url} is {got}, not the version {digest}",
                {"expected": digest, "got": got},
            )
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(unpacked, dest)
    return dest
