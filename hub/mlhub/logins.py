"""``mlhub login``: a hub token for the command line without the ``/hub/token`` page.

It asks the hub for a token of the user with their name and password (JupyterHub's token API
takes them in the request body), and keeps it for this account in
``~/.config/mlhub/tokens.json`` (mode 0600, one token per hub URL), where ``mlhub models`` and
``mlhub batch`` find it when ``MLHUB_TOKEN`` is not set. The token carries the user's own
permissions and expires (``--days``, 30 by default); the hub's token page lists and revokes it
("mlhub login on <host>").
"""

import json
import os
import socket
from pathlib import Path

import requests

from mlhub.errors import MlhubError, PublisherUnreachable, Unauthorized


def tokens_file():
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "mlhub" / "tokens.json"


def _read():
    try:
        return json.loads(tokens_file().read_text())
    except (OSError, ValueError):
        return {}


def stored_token(url):
    """The token ``mlhub login`` stored for the hub at ``url``, or None."""
    entry = _read().get(url.rstrip("/") + "/")
    return entry.get("token") if isinstance(entry, dict) else None


def login(url, user, password, days=30, timeout=30):
    """Ask the hub at ``url`` for a token of ``user``, store it, and return the hub's answer
    (``{"token", "expires_at", ...}``)."""
    url = url.rstrip("/") + "/"
    body = {
        "auth": {"username": user, "password": password},
        "note": f"mlhub login on {socket.gethostname()}",
        "expires_in": int(days * 86400),
    }
    try:
        reply = requests.post(f"{url}hub/api/users/{user}/tokens", json=body, timeout=timeout)
    except requests.RequestException as exc:
        raise PublisherUnreachable(
            f"cannot reach the hub at {url} ({exc}); is mlhub running, and is that its URL "
            "(--url, MLHUB_URL)?",
            {"url": url},
        ) from exc
    if reply.status_code in (401, 403):
        raise Unauthorized(f"the hub at {url} refused {user!r}: wrong name or password")
    if reply.status_code >= 400:
        raise MlhubError(f"the hub at {url} answered {reply.status_code}: {reply.text[:300]}")
    answer = reply.json()
    tokens = _read()
    tokens[url] = {"user": user, "token": answer["token"], "expires_at": answer.get("expires_at")}
    path = tokens_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(tokens, indent=1))
    os.replace(tmp, path)
    return answer
