"""A published model's endpoint, called from many threads: keep-alive, retries, typed errors.

The model is named ``user/name`` (or ``name``, your own), resolved to its URL through the
publisher (``PublisherClient``), or given as the endpoint's base URL (``http://host:port/``,
e.g. a serving process started by hand). Each thread keeps one ``requests`` session, so every
request reuses a connection.

A chunk travels as the columnar JSON body ``{"columns": [...], "data": [[...], ...]}`` with
the columns in signature order, which is the serving runtime's fastest path (one array build).
Numeric chunks are written by orjson straight from one numpy array, without Python lists.
"""

import threading
import time

import numpy as np
import orjson
import pyarrow as pa
import requests
from mlhub.errors import from_reply
from mlhub.publisher.client import PublisherClient

from .errors import ModelUnreachable
from .scorer import Scorer

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_JSON = {"Content-Type": "application/json"}


def _numeric(table):
    """Whether every column is numeric of one kind (all floats, or all integers)."""
    types = [c.type for c in table.columns]
    return all(pa.types.is_floating(t) for t in types) or all(pa.types.is_integer(t) for t in types)


def encode(features):
    """The request body for a table of model inputs."""
    if features.num_columns and _numeric(features):
        data = np.column_stack([c.to_numpy() for c in features.columns])  # NaN -> null
    else:
        data = list(zip(*(c.to_pylist() for c in features.columns), strict=True))
    return orjson.dumps(
        {"columns": features.column_names, "data": data}, option=orjson.OPT_SERIALIZE_NUMPY
    )


class ModelEndpoint(Scorer):
    def __init__(self, base_url, *, token=None, settings):
        self.base_url = base_url.rstrip("/") + "/"
        self.token = token
        self.settings = settings
        self._local = threading.local()
        metadata = self._json("GET", "v1/metadata")
        self.name = metadata.get("name") or self.base_url
        self.version = metadata.get("version")
        self.signature = metadata.get("signature")

    @classmethod
    def resolve(cls, model, *, url=None, token=None, settings):
        """The endpoint of ``model``: ``user/name``, ``name`` or an endpoint URL."""
        if model.startswith(("http://", "https://")):
            base = model.removesuffix("/").removesuffix("/v1/predict")
            client_token = token or PublisherClient(url).token
            return cls(base, token=client_token, settings=settings)
        client = PublisherClient(url, token)
        return cls(client.get(model)["url"], token=client.token, settings=settings)

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            if self.token:
                session.headers["Authorization"] = f"token {self.token}"
        return session

    def _send(self, method, path, body=None):
        """The response, after retrying what a restarting or busy model answers."""
        url = self.base_url + path
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            try:
                resp = self._session().request(
                    method, url, data=body, headers=_JSON, timeout=self.settings.timeout
                )
                if resp.status_code not in _RETRY_STATUSES:
                    return resp
                reason = f"HTTP {resp.status_code}: {resp.text[:200]}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < attempts:
                time.sleep(min(0.5 * 2**attempt, 10.0))
        raise ModelUnreachable(
            f"the model at {self.base_url} failed {attempts} times ({reason}); chunks already "
            "written are kept: rerun the same command to resume",
            {"url": url, "reason": reason},
        )

    def _json(self, method, path, body=None):
        resp = self._send(method, path, body)
        if resp.status_code >= 400:
            raise from_reply(self.base_url + path, resp.status_code, resp.content)
        return orjson.loads(resp.content)

    def predict(self, features):
        return self._json("POST", "v1/predict", encode(features))["predictions"]
