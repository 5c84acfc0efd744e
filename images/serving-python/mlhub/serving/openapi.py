"""The OpenAPI 3.1 description of one served model, built once from its signature.

OpenAPI 3.1 (JSON Schema 2020-12) is used so a row can be described exactly, one typed
position per input (``prefixItems``), next to the record form keyed by input name.
"""

from mlhub.bundle.signature import TYPE_TABLE

# What the runtime accepts (mlhub.serving.validation; the JSON Schema of mlhub.bundle.signature's
# table): null is a missing number or string, and a boolean is read as 0 or 1 in a number input
# (numpy's rule). A category's schema is its levels.
_JSON_TYPE = {typ: spec["json"] for typ, spec in TYPE_TABLE.items() if spec["json"]}


def _input_schema(entry, takes_missing=True):
    """An input's JSON Schema; a model that does not take missing numbers gets no null in its
    number inputs (the runtime refuses them: ``validation.Schema.refuse_missing``)."""
    if entry["type"] == "category":
        return {"enum": [*(entry.get("levels") or []), None], "description": "category"}
    schema = dict(_JSON_TYPE[entry["type"]], description=entry["type"])
    if not takes_missing and TYPE_TABLE[entry["type"]]["numpy"].startswith("float"):
        schema["type"] = [t for t in schema["type"] if t != "null"]
        schema["description"] += ", no missing values (the model does not accept them)"
    return schema


def _error(description):
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema_ref, description="OK"):
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def versioned(path_item):
    """A ``/v2/models/{name}`` route's description for its ``/versions/{version}`` twin."""
    version_param = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "the live version (404 for any other)",
    }
    return {
        method: {
            **operation,
            "parameters": [*operation["parameters"], version_param],
            "responses": {**operation["responses"], "404": _error("Another model or version")},
        }
        for method, operation in path_item.items()
    }


def build_spec(served, *, owner=None, prefix="", auth=True):
    """The whole document as a dict (the app serializes it once)."""
    signature = served.manifest.get("signature")
    if signature:
        inputs = signature["inputs"]
        takes = served.accepts_missing
        record = {
            "type": "object",
            "properties": {i["name"]: _input_schema(i, takes) for i in inputs},
            "required": [i["name"] for i in inputs],
            "additionalProperties": False,
        }
        row = {
            "type": "array",
            "prefixItems": [_input_schema(i, takes) for i in inputs],
            "items": False,
            "minItems": len(inputs),
            "description": "values in the order " + ", ".join(i["name"] for i in inputs),
        }
        columns = {
            "type": "array",
            "items": {"enum": [i["name"] for i in inputs]},
            "minItems": 1,
            "uniqueItems": True,
        }
    else:
        record = {"type": "object"}
        row = {"type": "array"}
        columns = {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True}
    example = served.manifest.get("example")
    predict_request = {
        "oneOf": [
            {
                "type": "object",
                "required": ["instances"],
                "properties": {
                    "instances": {
                        "oneOf": [
                            {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                            {"type": "array", "items": {"$ref": "#/components/schemas/Row"}},
                        ],
                        "minItems": 1,
                    }
                },
            },
            {
                "type": "object",
                "required": ["columns", "data"],
                "properties": {
                    "columns": columns,
                    "data": {
                        "type": "array",
                        "items": {"type": "array", "minItems": 1},
                        "minItems": 1,
                    },
                },
            },
        ]
    }
    if example:
        predict_request["example"] = {"instances": example}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "data": {"type": "array"},
        },
    }
    errors = {
        "400": _error("The input does not match the signature (the message says how)"),
        "401": _error("No token, or a token that is not valid"),
        "403": _error("The token's user may not call this model"),
        "413": _error("The body is larger than the server's limit"),
        "415": _error("The body is neither JSON nor of a type this route takes"),
        "422": _error("The model raised on this input"),
        "503": _error("The model is not loaded"),
    }
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    public = {"security": []}
    paths = {
        "/healthz": {
            "get": {
                "summary": "The process is alive",
                **public,
                "responses": {"200": {"description": "alive"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "The model is loaded and can predict",
                **public,
                "responses": {
                    "200": {"description": "ready"},
                    "503": _error("Not ready; says why"),
                },
            }
        },
        "/v1/metadata": {
            "get": {
                "summary": "Name, owner, version, flavor, signature, example, requirements",
                "responses": {"200": {"description": "metadata"}},
            }
        },
        "/v1/predict": {
            "post": {
                "summary": "Predict rows given as records, rows or columns",
                "parameters": [
                    {
                        "name": "proba",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                        "description": "also return class probabilities (needs predict_proba)",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/PredictRequest"}
                        }
                    },
                },
                "responses": {"200": _json("PredictResponse"), **errors},
            }
        },
        "/v2/models/{name}": {
            "get": {
                "summary": "Open Inference Protocol model metadata",
                "parameters": [name_param],
                "responses": {"200": {"description": "metadata"}, "404": _error("Another model")},
            }
        },
        "/v2/models/{name}/ready": {
            "get": {
                "summary": "Open Inference Protocol model readiness",
                "parameters": [name_param],
                "responses": {
                    "200": {"description": "ready"},
                    "404": _error("Another model"),
                    "503": _error("Not ready"),
                },
            }
        },
        "/v2/models/{name}/infer": {
            "post": {
                "summary": "Open Inference Protocol inference",
                "parameters": [name_param],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["inputs"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "inputs": {"type": "array", "items": tensor, "minItems": 1},
                                    "outputs": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "name": {"enum": ["predict", "predict_proba"]}
                                            },
                                        },
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "outputs"},
                    "404": _error("Another model"),
                    **errors,
                },
            }
        },
        "/v2": {
            "get": {
                "summary": "Open Inference Protocol server metadata (name, version, extensions)",
                "responses": {"200": {"description": "metadata"}},
            }
        },
        "/v2/health/live": {
            "get": {
                "summary": "Open Inference Protocol liveness",
                **public,
                "responses": {"200": {"description": "live"}},
            }
        },
        "/v2/health/ready": {
            "get": {
                "summary": "Open Inference Protocol readiness",
                **public,
                "responses": {"200": {"description": "ready"}, "503": _error("Not ready")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition format"}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
    }
    for route in ("", "/ready", "/infer"):
        paths[f"/v2/models/{{name}}/versions/{{version}}{route}"] = versioned(
            paths[f"/v2/models/{{name}}{route}"]
        )
    spec = {
        "openapi": "3.1.0",
        "info": {
            "title": f"{served.name} (mlhub model)",
            "version": served.version or "unknown",
            "description": (served.manifest.get("description") or "")
            + (f"\n\nOwner: {owner}" if owner else ""),
        },
        "servers": [{"url": prefix or "/"}],
        "paths": paths,
        "components": {
            "schemas": {
                "Record": record,
                "Row": row,
                "PredictRequest": predict_request,
                "PredictResponse": {
                    "type": "object",
                    "required": ["predictions"],
                    "properties": {
                        "predictions": {"type": "array"},
                        "probabilities": {"type": "array", "items": {"type": "array"}},
                        "classes": {"type": "array"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "code"],
                    "properties": {
                        "error": {
                            "type": "string",
                            "description": "what was wrong and how to fix it",
                        },
                        "code": {"type": "string"},
                        "detail": {},
                    },
                },
            },
        },
    }
    if auth:
        spec["components"]["securitySchemes"] = {
            "token": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "'token <API key or JupyterHub token>'",
            },
            "bearer": {"type": "http", "scheme": "bearer"},
        }
        spec["security"] = [{"token": []}, {"bearer": []}]
    return spec
