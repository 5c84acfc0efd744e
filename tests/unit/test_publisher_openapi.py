"""The OpenAPI document describes exactly the routes the publisher serves."""

import re

from tornado.web import RequestHandler

from mlhub.publisher.handlers import API_ROUTES, make_handlers, url_pattern
from mlhub.publisher.openapi import load_spec

METHODS = ("get", "post", "put", "patch", "delete")


def implemented(handler):
    return {m for m in METHODS if getattr(handler, m) is not getattr(RequestHandler, m)}


def test_every_route_and_method_is_documented_and_nothing_else():
    paths = load_spec()["paths"]
    routed = {template: implemented(cls) for template, cls in API_ROUTES}
    documented = {path: {m for m in ops if m in METHODS} for path, ops in paths.items()}
    assert routed == documented


def test_every_operation_answers_something_and_path_parameters_are_declared():
    for path, ops in load_spec()["paths"].items():
        declared = {p.get("name") or p["$ref"].rsplit("/", 1)[1] for p in ops.get("parameters", [])}
        for method in set(ops) & set(METHODS):
            assert ops[method]["responses"], (path, method)
            assert ops[method].get("summary"), (path, method)
        assert set(re.findall(r"\{(\w+)\}", path)) <= declared, path


def test_templates_become_tornado_patterns():
    pattern = url_pattern("/api/models/{user}/{name}/keys/{key_id}")
    match = re.match(pattern, "/api/models/alice/iris/keys/k1")
    assert match.groupdict() == {"user": "alice", "name": "iris", "key_id": "k1"}
    assert not re.match(pattern, "/api/models/alice/iris/keys/k1/extra")
    handlers = {route[0]: route[1] for route in make_handlers("/services/mlhub-publisher/")}
    assert "/services/mlhub-publisher/api/models$" in handlers
