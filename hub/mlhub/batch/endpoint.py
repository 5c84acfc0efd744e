"""A published model's endpoint, called from many threads: keep-alive, retries, typed errors.

The model is named ``user/name`` (or ``name``, your own), resolved to its URL through the
publisher (``PublisherClient``), or given as the endpoint's base URL (``http://host:port/``,
e.g. a serving process started by hand). Each thread keeps one ``requests`` session, so every
request reuses a connection.

A chunk travels as an Arrow IPC stream (one column per input, answered as an Arrow stream
with a ``predictions`` column): no value is parsed or printed as text on either side, which is
what makes HTTP cost little next to the model. A server that cannot read Arrow answers 415;
the endpoint then sends the columnar JSON body ``{"columns": [...], "data": [[...], ...]}``
for the rest of the run, numeric chunks written by orjson straight from one numpy array.
"""

import threading
import time

import numpy as np
import orjson
import pyarrow as pa
import requests

from mlhub.errors import PayloadTooLarge, from_reply
from mlhub.publisher.client import PublisherClient

from .errors import ModelUnreachable
from .scorer import Scorer

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ARROW_STREAM = "application/vnd.apache.arrow.stream"
_JSON = {"Content-Type": "application/json"}
_ARROW = {"Content-Type": ARROW_STREAM, "Accept": f"{ARROW_STREAM}, application/json;q=0.5"}


def _numeric(table):
    """Whether every column is numeric of one kind (all floats, or all integers)."""
    types = [c.type for c in table.columns]
    return all(pa.types.is_floating(t) for t in types) or all(pa.types.is_integer(t) for t in types)


def encode_arrow(features):
    """The Arrow IPC stream body for a table of model inputs."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, features.schema) as writer:
        writer.write_table(features)
    return sink.getvalue().to_pybytes()


def decode_arrow(content):
    """The ``predictions`` column of an Arrow stream answer, as numpy where it is flat."""
    column = pa.ipc.open_stream(content).read_all().column("predictions")
    return column.to_pylist() if column.type.num_fields else column.to_numpy()


def encode(features):
    """The columnar JSON body for a table of model inputs."""
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
        self.arrow = True  # until the server answers 415 to an Arrow body
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

    def _send(self, method, path, body=None, headers=_JSON):
        """The response, after retrying what a restarting or busy model answers."""
        url = self.base_url + path
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            try:
                resp = self._session().request(
                    method, url, data=body, headers=headers, timeout=self.settings.timeout
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

    def _check(self, resp, path):
        if resp.status_code >= 400:
            raise from_reply(self.base_url + path, resp.status_code, resp.content)
        return resp

    def _json(self, method, path, body=None):
        return orjson.loads(self._check(self._send(method, path, body), path).content)

    def _fits(self, body, rows):
        """Refuse a body over ``max_request_bytes`` here, as the server would with 413, so the
        chunk is split before it is sent (see ``BatchSettings.max_request_bytes``)."""
        limit = self.settings.max_request_bytes
        if len(body) > limit:
            raise PayloadTooLarge(
                f"{rows} row(s) make a {len(body):,}-byte request, over max_request_bytes "
                f"({limit:,})",
                {"size": len(body), "limit": limit},
            )
        return body

    def predict(self, features):
        rows = features.num_rows
        if self.arrow:
            body = self._fits(encode_arrow(features), rows)
            resp = self._send("POST", "v1/predict", body, _ARROW)
            if resp.status_code != 415:
                resp = self._check(resp, "v1/predict")
                if resp.headers.get("Content-Type", "").startswith(ARROW_STREAM):
                    return decode_arrow(resp.content)
                return orjson.loads(resp.content)["predictions"]
            self.arrow = False
        return self._json("POST", "v1/predict", self._fits(encode(features), rows))["predictions"]
