"""The mlhub instances running on this machine, so every command finds the one it means.

While ``mlhub up`` runs it records itself twice: in its data folder (``instance.json``: its
URL, ports, config file, pid and version) and in the registry of the account that runs it, one
file per data folder, so that a command run from any folder finds it
(``$XDG_RUNTIME_DIR/mlhub/instances``, else ``~/.local/state/mlhub/instances``).

``mlhub users`` takes its data folder from there when none is given and ``./mlhub-data`` does
not exist; ``mlhub models``, ``mlhub login`` and ``mlhub batch`` take its URL when
``MLHUB_URL`` is not set. With no instance, or several, they say so and what to pass instead of
guessing (a command never makes a data folder of its own).

Records are the account's alone (mode 0600, like the data folder's other files), though they
hold no secret; a record whose process is gone is ignored and removed.
"""

import hashlib
import json
import os
import time
from pathlib import Path

from mlhub import __version__
from mlhub.errors import MlhubError

RECORD = "instance.json"


def registry_dir():
    """This account's registry, or None for an account without a home (a pod's random uid):
    it then records and finds nothing, and the commands use their defaults."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    try:
        base = Path(runtime) if runtime else Path.home() / ".local" / "state"
    except (RuntimeError, KeyError):
        return None
    return base / "mlhub" / "instances"


def _registry_file(data_dir):
    folder = registry_dir()
    if folder is None:
        raise OSError("no registry for this account")
    return folder / (hashlib.sha256(str(data_dir).encode()).hexdigest()[:16] + ".json")


def record(settings, pid=None):
    """Record the instance ``settings`` describe as running (in its data folder and in this
    account's registry); returns a function that removes both records."""
    entry = {
        "url": settings.public_url,
        "data_dir": settings.data_dir,
        "config_file": settings.config_file or None,
        "pid": pid or os.getpid(),
        "port": settings.port,
        "hub_port": settings.hub_port,
        "proxy_api_port": settings.proxy_api_port,
        "publisher_port": settings.publisher_port,
        "version": __version__,
        "started": time.time(),
    }
    text = json.dumps(entry, indent=1)
    paths = [Path(settings.data_dir, RECORD)]
    _write(paths[0], text)
    try:  # a registry this account cannot write (a foreign XDG_RUNTIME_DIR) only costs finding
        _write(_registry_file(settings.data_dir), text)
        paths.append(_registry_file(settings.data_dir))
    except OSError:
        pass

    def remove():
        for path in paths:
            path.unlink(missing_ok=True)

    return remove


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # this account's alone, as everything in the data folder that is not a user's
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _alive(entry):
    """Whether the recorded process still runs ``mlhub up`` (a pid may have been reused)."""
    try:
        cmdline = Path(f"/proc/{int(entry['pid'])}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return b"up" in cmdline and any(b"mlhub" in part for part in cmdline)


def running():
    """The records of this account's running instances (stale ones are removed)."""
    found = []
    folder = registry_dir()
    for path in sorted(folder.glob("*.json")) if folder is not None else []:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _alive(entry):
            found.append(entry)
        else:
            path.unlink(missing_ok=True)
    return found


def the_running_one(what, how):
    """The one running instance, or None when none runs; several is an error that lists them
    and says ``how`` to choose (``what``: what the caller needs of it)."""
    found = running()
    if len(found) > 1:
        listed = "; ".join(f"{e['url']} (data {e['data_dir']})" for e in found)
        raise MlhubError(f"several mlhub instances run here ({listed}): to pick {what}, {how}")
    return found[0] if found else None
