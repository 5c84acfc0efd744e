"""The Open Inference Protocol v2 routes: server metadata, model metadata, ready and infer, with
and without ``/versions/{version}``, JSON or Triton's binary tensors (``v2`` reads and writes
the protocol); the health routes are the app's own."""

from flask import Response, request

from mlhub.errors import NotFound

from . import v2
from .batching import PREDICT
from .http import body_media, encode, json_response, parse_body, read_body
from .inferencelog import LOGGED


def add_routes(app, ctx):
    """Add the v2 routes of ``ctx.served`` to the Flask ``app`` (``ctx``: ``app.Context``)."""
    served, predictor, metrics, max_bytes = ctx.served, ctx.predictor, ctx.metrics, ctx.max_bytes
    logging = ctx.inference_log is not None
    v2_metadata = encode(v2.model_metadata(served)) if served.ready else None
    server_metadata = encode(v2.server_metadata())

    def same_model(name, version=None):
        """404 unless the URL names this model (and, if it names one, its live version)."""
        if name != served.name:
            raise NotFound(
                f"this server serves the model {served.name!r}, not {name!r}",
                {"model": served.name},
            )
        if version is not None and version != served.version:
            raise NotFound(
                f"this server serves version {served.version!r} of {served.name!r}, "
                f"not {version!r}: leave the version out to call the live one",
                {"model": served.name, "version": served.version},
            )

    def v2_model(name, version=None):
        same_model(name, version)
        served.require_ready()
        return json_response(v2_metadata)

    def v2_ready(name, version=None):
        same_model(name, version)
        served.require_ready()
        return json_response({"name": served.name, "ready": True})

    def v2_infer(name, version=None):
        same_model(name, version)
        served.require_ready()
        environ = request.environ
        media = body_media(environ)
        with predictor.request() as run:
            data = read_body(environ, max_bytes)
            header_length = environ.get(v2.HEADER_LENGTH)
            if header_length is None:
                body, binary = parse_body(environ, data, media), b""
            else:
                body, binary = v2.split_binary(data, header_length)
            infer = v2.parse_infer(served.schema, body, binary)
            results = run(infer.model_input, infer.rows, infer.outputs)
        if logging:
            environ[LOGGED] = (infer.model_input, infer.rows, results.get(PREDICT))
        answer = {"model_name": served.name, "model_version": served.version}
        if infer.id is not None:
            answer["id"] = infer.id
        header, tail = v2.answer(answer, infer, results, encode)
        metrics.add_rows(infer.rows)
        if not tail:
            return json_response(header)
        response = Response(header + tail, 200, content_type="application/octet-stream")
        response.headers[v2.HEADER_LENGTH_NAME] = str(len(header))
        return response

    versioned = "/v2/models/<name>/versions/<version>"
    for rule, endpoint, view, methods in (
        ("/v2/models/<name>", "v2_model", v2_model, ["GET"]),
        (versioned, "v2_model", v2_model, ["GET"]),
        ("/v2/models/<name>/ready", "v2_ready", v2_ready, ["GET"]),
        (versioned + "/ready", "v2_ready", v2_ready, ["GET"]),
        ("/v2/models/<name>/infer", "v2_infer", v2_infer, ["POST"]),
        (versioned + "/infer", "v2_infer", v2_infer, ["POST"]),
    ):
        app.add_url_rule(rule, endpoint, view, methods=methods)

    @app.get("/v2", endpoint="v2_server")
    def v2_server():
        return json_response(server_metadata)
