"""What both deployers share: reading a serving runtime's ``/readyz`` refusal, and what names a
unit they run (a model's default alias or another alias)."""

import io
import json

from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

from mlhub.deployers.base import ModelRef, load_failure


def refusal(code, body):
    request = HTTPRequest("http://127.0.0.1:1/models/alice/m/readyz")
    response = HTTPResponse(request, code, buffer=io.BytesIO(body.encode()))
    return HTTPClientError(code, response=response)


def test_a_model_that_does_not_load_is_told_apart_from_one_still_starting():
    failed = {
        "error": "the model is not loaded: No module named 'xgboost'",
        "code": "not_ready",
        "detail": {"bundle": "/b", "reason": "No module named 'xgboost'"},
    }
    assert load_failure(refusal(503, json.dumps(failed))) == "No module named 'xgboost'"
    # the serving front (nginx) while the runtime behind it starts: wait, do not refuse
    starting = {"error": "the model server is starting", "code": "not_ready", "detail": None}
    assert load_failure(refusal(503, json.dumps(starting))) is None
    assert load_failure(refusal(502, json.dumps(failed))) is None
    assert load_failure(refusal(503, "<html>Service Unavailable</html>")) is None
    assert load_failure(HTTPClientError(599)) is None  # no answer at all


def test_each_alias_is_a_unit_with_its_own_routes_and_files_of_the_same_model():
    plain, staging = ModelRef("jane.doe", "iris"), ModelRef("jane.doe", "iris", "staging")
    assert plain.key == staging.key == "jane.doe/iris"  # tokens and access are the model's
    assert (plain.unit, staging.unit) == ("jane.doe/iris", "jane.doe/iris@staging")
    assert plain.route_prefixes == ["/models/jane.doe/iris", "/models/jane.doe/iris@production"]
    assert staging.route_prefixes == ["/models/jane.doe/iris@staging"]
    # every unit's runtime strips the model's prefix (an @alias after it is stripped too)
    assert staging.model_prefix == plain.model_prefix == plain.url_prefix
    assert (plain.file_stem, staging.file_stem) == ("iris", "iris@staging")
    assert staging.with_alias("production") == plain == staging.with_alias(None)
    assert plain.with_alias("staging") == staging
