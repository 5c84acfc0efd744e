"""The serving contract's own routes (v1): ``GET /v1/metadata`` and ``POST /v1/predict``
(JSON records or rows, or an Arrow/Parquet table; ``?proba=true`` adds class probabilities)."""

from flask import Response, request

from . import arrowio
from .batching import PREDICT, PREDICT_PROBA
from .http import DECLARED_OTHER, JSON, body_media, encode, json_response, parse_body, read_body
from .inferencelog import LOGGED, sent_rows

PREDICT_MEDIA = (JSON, *arrowio.MEDIA)
PREDICT_ONLY = (PREDICT,)
WITH_PROBA = (PREDICT, PREDICT_PROBA)
_TRUE = ("1", "true", "yes", "on")


def add_routes(app, ctx):
    """Add the v1 routes of ``ctx.served`` to the Flask ``app`` (``ctx``: ``app.Context``)."""
    served, predictor, metrics, max_bytes = ctx.served, ctx.predictor, ctx.metrics, ctx.max_bytes
    logging = ctx.inference_log is not None
    metadata = encode(served.metadata(ctx.settings.owner))

    @app.get("/v1/metadata", endpoint="metadata")
    def metadata_view():
        return json_response(metadata)

    @app.post("/v1/predict", endpoint="predict")
    def predict():
        served.require_ready()
        environ = request.environ
        media = body_media(environ, PREDICT_MEDIA)
        arrow_answer = arrowio.wants_arrow(environ.get("HTTP_ACCEPT"))
        proba = bool(environ.get("QUERY_STRING")) and (
            request.args.get("proba", "").lower() in _TRUE
        )
        with predictor.request() as run:
            data = read_body(environ, max_bytes)
            payload = None
            if media in (JSON, DECLARED_OTHER):
                payload = parse_body(environ, data, media, arrowio.MEDIA)
                model_input, rows = served.schema.from_payload(payload)
            else:
                model_input, rows = arrowio.table_input(
                    served.schema, arrowio.read_table(data, media)
                )
            results = run(model_input, rows, WITH_PROBA if proba else PREDICT_ONLY)
        if logging:
            environ[LOGGED] = (sent_rows(payload, model_input), rows, results[PREDICT])
        if arrow_answer:
            body = arrowio.write_answer(results, served.classes)
            metrics.add_rows(rows)
            return Response(body, 200, content_type=arrowio.ARROW_STREAM)
        answer = {"predictions": results[PREDICT]}
        if proba:
            answer["probabilities"] = results[PREDICT_PROBA]
            answer["classes"] = served.classes
        body = encode(answer)
        metrics.add_rows(rows)
        return json_response(body)
