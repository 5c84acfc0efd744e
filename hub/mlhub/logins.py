"""``mlhub login``: a hub token for the command line without the ``/hub/token`` page.

It logs in to the hub with the user's name and password through the hub's own login form,
asks for a token with that session as the ``/hub/token`` page does, and keeps it for this
account in ``~/.config/mlhub/tokens.json`` (mode 0600, one token per hub URL), where
``mlhub models`` and ``mlhub batch`` find it when ``MLHUB_TOKEN`` is not set.

The token carries the user's own permissions and expires (``--days``, 30 by default); the
hub's token page lists and revokes it ("mlhub login on <host>").
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
    except (OSError, ValueError, RuntimeError, KeyError):  # no file, or no home at all
        return {}


def stored_token(url):
    """The token ``mlhub login`` stored for the hub at ``url``, or None."""
    entry = _read().get(url.rstrip("/") + "/")
    return entry.get("token") if isinstance(entry, dict) else None


def login(url, user, password, days=30, timeout=30):
    """Ask the hub at ``url`` for a token of ``user``, store it, and return the hub's answer
    (``{"token", "expires_at", ...}``). It logs in through the hub's login form, as a browser
    does (the hub makes a user it has not seen yet at their first login), then asks for the
    token with that session, as the token page does."""
    url = url.rstrip("/") + "/"
    session = requests.Session()
    try:
        session.get(f"{url}hub/login", timeout=timeout).raise_for_status()
        form = {"username": user, "password": password, "_xsrf": _xsrf(session)}
        answer = session.post(f"{url}hub/login", data=form, timeout=timeout, allow_redirects=False)
        if answer.status_code != 302:
            raise Unauthorized(f"the hub at {url} refused {user!r}: wrong name or password")
        body = {
            "note": f"mlhub login on {socket.gethostname()}",
            "expires_in": int(days * 86400),
        }
        reply = session.post(
            f"{url}hub/api/users/{user}/tokens",
            json=body,
            headers={"X-XSRFToken": _xsrf(session)},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise PublisherUnreachable(
            f"cannot reach the hub at {url} ({exc}); is mlhub running, and is that its URL "
            "(--url, MLHUB_URL)?",
            {"url": url},
        ) from exc
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


def _xsrf(session):
    """The hub's xsrf token of the session (its ``_xsrf`` cookie, renewed at login)."""
    return session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf") or ""
