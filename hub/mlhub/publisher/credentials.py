"""The credentials of a published model besides hub tokens, and who they let in.

- **API keys** (``mlhk_...``) let programs without a hub account call one model. Only their
  sha256 is stored and handed to the serving processes (``access_list``); the key itself is
  shown once, when it is minted.
- **Bundle tokens** (``mlhb_...``) let a model's own pods download its bundles from the
  publisher, and nothing else; **log tokens** (``mlhl_...``) let its serving processes send its
  inference log, and nothing else (the model's own code runs in those processes, so they never
  hold the bundle token). A token is an HMAC of its purpose and the model's name under the
  publisher's secret, so nothing is stored and a restarted publisher accepts the tokens running
  pods hold.
"""

import hashlib
import hmac
import secrets

from mlhub.deployers.base import ModelRef

KEY_PREFIX = "mlhk_"
BUNDLE, LOG = "bundle", "log"  # what a model token lets its holder do
TOKEN_PREFIXES = {BUNDLE: "mlhb_", LOG: "mlhl_"}


def hash_key(key):
    """What is stored of an API key, and what a serving process compares with."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key():
    """A fresh API key, as ``(key, its hash)``."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key)


def access_list(model, extra_keys=()):
    """Who may call ``model``'s endpoint, as its serving processes read it: the owner and the
    users and groups it is shared with, and the hashes of its API keys (and of ``extra_keys``:
    the publisher's own, ``BundleTokens.shadow_key``)."""
    return {
        "users": [model.owner, *(model.shared_with or [])],
        "groups": list(model.shared_groups or []),
        "key_hashes": [k.key_sha256 for k in model.api_keys] + [hash_key(k) for k in extra_keys],
    }


class BundleTokens:
    """Bundle and log tokens under one secret (random when none is given: valid for this
    process)."""

    def __init__(self, secret=None):
        self._secret = secret or secrets.token_bytes(32)

    def token(self, ref, purpose=BUNDLE):
        """The token that lets ``ref``'s (a ``ModelRef``) processes read its bundles
        (``BUNDLE``) or send its inference log (``LOG``)."""
        mac = hmac.new(self._secret, f"{purpose}:{ref.key}".encode(), hashlib.sha256)
        return TOKEN_PREFIXES[purpose] + mac.hexdigest()

    def log_token(self, ref):
        return self.token(ref, LOG)

    def shadow_key(self, ref):
        """The API key with which the publisher sends shadowed requests to ``ref``'s shadow:
        derived like the tokens (never stored, the same after a restart), held by the
        publisher alone, and in the model's access list only while it has a shadow."""
        mac = hmac.new(self._secret, f"shadow:{ref.key}".encode(), hashlib.sha256)
        return KEY_PREFIX + mac.hexdigest()

    def valid(self, owner, name, token, purpose=BUNDLE):
        """Whether ``token`` is the ``purpose`` token of ``owner``'s model ``name``."""
        return hmac.compare_digest(self.token(ModelRef(owner, name), purpose), token)
