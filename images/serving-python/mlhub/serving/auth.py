"""Who may call this model: API keys and JupyterHub users, decided in microseconds per request.

The publisher writes the access file (``MLHUB_ACCESS_FILE``)::

    {"users": ["alice"], "groups": ["analysts"], "key_hashes": ["<sha256 hex of mlhk_...>"]}

A request carries a token (``Authorization: token X``, ``Authorization: Bearer X`` or
``X-Api-Key: X``). It is accepted if sha256(X) is one of ``key_hashes`` (an API key of this
model; the server never sees keys, only their hashes) or if X is a JupyterHub token whose user
is listed in ``users`` (the owner always is) or belongs to one of ``groups``.

Costs: the access file is stat'ed at most once per second and re-read only when it changed
(mtime, size or inode; write it atomically with a rename). The hub is asked who owns a token
once per ``ttl`` seconds (``negative_ttl`` for tokens it rejects), keyed by the token's sha256,
so a steady client costs one hash and two dictionary lookups per request.
"""

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request

from mlhub.errors import Forbidden, MlhubError, Unauthorized

log = logging.getLogger("mlhub.serving")

API_KEY_PREFIX = "mlhk_"
_HOW = "send 'Authorization: token <key>' with an API key of this model or your JupyterHub token"


class HubUnavailable(MlhubError):
    """The hub could not be asked about a token: the request can be neither allowed nor denied."""

    status = 503
    error = "auth_unavailable"


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


class AccessList:
    """The access file's three sets, kept current without a stat per request."""

    def __init__(self, path, *, check_every=1.0, clock=time.monotonic):
        self.path = path
        self.check_every = check_every
        self.clock = clock
        self.users = frozenset()
        self.groups = frozenset()
        self.key_hashes = frozenset()
        self._stamp = None
        self._next_check = 0.0
        self.refresh()

    def current(self):
        """The access list, re-read first if the file changed (looked at once per second)."""
        now = self.clock()
        if now >= self._next_check:
            self._next_check = now + self.check_every
            self.refresh()
        return self

    def refresh(self):
        if not self.path:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp != "missing":
                log.warning("access file %s does not exist: only the owner is allowed", self.path)
                self.users = self.groups = self.key_hashes = frozenset()
                self._stamp = "missing"
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            users = frozenset(str(u) for u in data.get("users", []))
            groups = frozenset(str(g) for g in data.get("groups", []))
            keys = frozenset(str(k).lower() for k in data.get("key_hashes", []))
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            # Keep the last good list: a half-written file must not lock everyone out.
            log.error("access file %s is unreadable, keeping the previous one: %s", self.path, exc)
            return
        self.users, self.groups, self.key_hashes = users, groups, keys
        self._stamp = stamp


def ask_hub(api_url, token, timeout):
    """``GET {api_url}/user`` with the token: the user model, or ``None`` if the hub rejects it."""
    request = urllib.request.Request(
        f"{api_url}/user", headers={"Authorization": f"token {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 404):
            return None
        raise HubUnavailable(
            f"JupyterHub answered {exc.code} when asked about the token; try again shortly",
            {"hub_status": exc.code},
        ) from exc
    except (OSError, ValueError) as exc:
        raise HubUnavailable(
            f"JupyterHub could not be reached to check the token ({exc}); try again shortly",
        ) from exc


class HubUsers:
    """JupyterHub token -> ``{"name", "groups"}`` (or ``None``), cached by the token's sha256."""

    def __init__(
        self,
        api_url,
        *,
        ttl=60.0,
        negative_ttl=5.0,
        timeout=5.0,
        max_entries=10_000,
        ask=ask_hub,
        clock=time.monotonic,
    ):
        self.api_url = api_url
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.timeout = timeout
        self.max_entries = max_entries
        self.ask = ask
        self.clock = clock
        self._cache = {}

    def user(self, token, digest):
        now = self.clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        model = self.ask(self.api_url, token, self.timeout)
        user = None
        if isinstance(model, dict) and model.get("name"):
            name = str(model["name"])
            if model.get("kind", "user") != "user":  # a hub service must not pass as a user
                name = f"{model['kind']}:{name}"
            user = {"name": name, "groups": [str(g) for g in model.get("groups") or []]}
        if len(self._cache) >= self.max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
        self._cache[digest] = (now + (self.ttl if user else self.negative_ttl), user)
        return user


def bearer_token(authorization, api_key=None):
    """The token of an ``Authorization`` header (``token X`` / ``Bearer X``) or ``X-Api-Key``."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token.strip():
            raise Unauthorized(
                f"the Authorization scheme {scheme!r} is not supported: {_HOW}",
                {"scheme": scheme},
            )
        return token.strip()
    if api_key:
        return api_key.strip()
    raise Unauthorized(f"this model needs a token: {_HOW}")


class Authenticator:
    """The allow/deny decision; ``check`` returns who is calling or raises 401/403."""

    def __init__(self, access, hub=None, owner=None):
        self.access = access
        self.hub = hub
        self.owner = owner

    def check(self, authorization, api_key=None):
        token = bearer_token(authorization, api_key)
        digest = token_hash(token)
        access = self.access.current()
        if digest in access.key_hashes:
            return f"key:{digest[:12]}"
        if token.startswith(API_KEY_PREFIX):
            # A key minted a moment ago must work on every worker at once (read-your-writes):
            # look at the file now rather than at the next once-a-second check. Only unknown
            # keys pay this stat; revocations still take effect within that second.
            access.refresh()
            if digest in access.key_hashes:
                return f"key:{digest[:12]}"
            raise Unauthorized(  # never forward an API key to the hub
                "this API key is not valid for this model (revoked, mistyped, or for another "
                "model): create a key for this model in the publisher"
            )
        if self.hub is None:
            raise Unauthorized(
                "the token is not an API key of this model, and this server cannot check "
                "JupyterHub tokens (JUPYTERHUB_API_URL is not set): use an API key"
            )
        user = self.hub.user(token, digest)
        if user is None:
            raise Unauthorized(
                "the token is neither an API key of this model nor a valid JupyterHub token: "
                + _HOW
            )
        name = user["name"]
        if (
            name == self.owner
            or name in access.users
            or not access.groups.isdisjoint(user["groups"])
        ):
            return f"user:{name}"
        raise Forbidden(
            f"user {name!r} may not call this model: ask its owner to share it with you "
            "or with one of your groups",
            {"user": name},
        )
