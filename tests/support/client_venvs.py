"""Third-party clients that cannot share the project's venv (their pins clash with it), each in
a venv of its own made once per machine and version under ``/var/cache/mlhub/clients``
(``MLHUB_CLIENTS_CACHE``), as a user's own environment would hold them."""

import fcntl
import os
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("MLHUB_CLIENTS_CACHE", "/var/cache/mlhub/clients"))


def client_python(requirement):
    """The Python of a venv holding ``requirement`` (``name==version``), made if missing."""
    venv = CACHE / requirement.replace("==", "-")
    python = venv / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".installed").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", requirement],
                check=True,
                timeout=900,
            )
            (venv / ".installed").touch()
    return str(python)
