"""Fuzzing through the hub's public URL, on a real ``mlhub up``: schemathesis generates requests
from the publisher's and a served model's own OpenAPI documents (valid and invalid bodies,
parameters and headers, with alice's token) and checks every answer: never a 5xx, and status,
content type and body as the document says. Beside it, a bundle-upload fuzz: broken archives and
manifests with every field of every wrong type, each a JSON 4xx that changes nothing.

Bounded: ``max_examples`` per operation, no deadline (the machine is shared); the totals
(requests, statuses, 5xx) are printed at the end of the module (``pytest -s``).
"""

import io
import json
import tarfile
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from support.embedded_hub import running_hub
from support.publishing import client, constant_bundle

from mlhub.bundle import pack

pytestmark = [pytest.mark.component, pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
STATUSES = Counter()  # every answer the fuzzers got, by status
# bundle uploads: the generated body is sent as the bytes it is
schemathesis.serializer.alias("application/gzip", "application/octet-stream")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(
        tmp_path_factory.mktemp("fuzz"), "c.PublisherApp.default_workers = 1\n"
    ) as hub:
        client(hub, hub.alice).publish(
            constant_bundle(tmp_path_factory.mktemp("m") / "b", 1.0), "target"
        )
        yield hub
    total = sum(STATUSES.values())
    server_errors = sum(n for status, n in STATUSES.items() if status >= 500)
    print(f"\nfuzz totals: {total} requests, 5xx: {server_errors}, by status: {dict(STATUSES)}")


@pytest.fixture(scope="module")
def publisher_schema(hub):
    return schemathesis.openapi.from_url(hub.publisher_url + "api/openapi.json")


@pytest.fixture(scope="module")
def model_schema(hub):
    return schemathesis.openapi.from_url(
        f"{hub.url}models/alice/target/openapi.json",
        headers={"Authorization": f"token {hub.alice}"},
    )


def call(case, hub, base_url):
    response = case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"token {hub.alice}"},
        checks=CHECKS,
    )
    STATUSES[response.status_code] += 1


def fuzz(schema, hub, base_url, path_parameters):
    """Every operation of ``schema``, with valid and with invalid data, ``path_parameters``
    fixed where the operation has them (schemathesis' pytest plugin needs a private attribute
    pytest 9 removed, so the operations' strategies run here)."""
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        fixed = {k: v(operation) for k, v in path_parameters.items() if k in names}
        for mode in schemathesis.GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
            @FUZZ
            def run(case):
                call(case, hub, base_url)

            try:
                run()
            except Unsatisfiable:  # nothing in this operation can be made invalid
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label


def test_publisher_api(hub, publisher_schema):
    """alice's own namespace and model (deleting it is left to generated names), so generated
    bodies reach the handlers behind authorization."""
    fuzz(
        publisher_schema,
        hub,
        hub.publisher_url.rstrip("/"),
        {
            "user": lambda op: "alice",
            "name": lambda op: "target" if op.method.upper() != "DELETE" else "fuzzed",
        },
    )


def test_model_api(hub, model_schema):
    fuzz(model_schema, hub, f"{hub.url}models/alice/target", {"name": lambda op: "target"})


# ---------------------------------------------------------------- bundle uploads

GOOD = {
    "format": 1,
    "name": "target",
    "runtime": "python",
    "flavor": "sklearn",
    "model_file": "model/model.pkl",
}
WRONG_VALUES = [None, True, 0, -1, 2.5, "", "x" * 300, [], [1], {}, {"a": 1}]


def tar_gz(files, links=()):
    """A tar.gz of ``files`` (name -> bytes) plus symbolic ``links`` (name -> target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


def manifest_bundle(manifest):
    import yaml

    return tar_gz(
        {"mlhub.yaml": yaml.safe_dump(manifest).encode(), "model/model.pkl": b"not a pickle"}
    )


def broken_uploads(tmp_path):
    good = pack(constant_bundle(tmp_path / "good", 2.0, name="target"))
    yield "empty", b""
    yield "not gzip", b"hello"
    yield "truncated", good[: len(good) // 2]
    yield "gzip of junk", tar_gz({})[:20] + b"\0" * 100
    yield "no manifest", tar_gz({"model/model.pkl": b"x"})
    yield "manifest not yaml", tar_gz({"mlhub.yaml": b"{: ["})
    yield "manifest a list", tar_gz({"mlhub.yaml": b"- 1\n- 2\n"})
    yield "path outside", tar_gz({"../escape": b"x", "mlhub.yaml": b"format: 1\n"})
    yield "absolute path", tar_gz({"/etc/passwd": b"x"})
    yield "a link", tar_gz({"mlhub.yaml": b"format: 1\n"}, links=[("model/model.pkl", "/etc")])
    yield "pickle is junk", manifest_bundle(GOOD)
    for field in GOOD:
        yield f"no {field}", manifest_bundle({k: v for k, v in GOOD.items() if k != field})
        for value in WRONG_VALUES:
            yield f"{field}={value!r}", manifest_bundle({**GOOD, field: value})
    for value in WRONG_VALUES[1:]:
        yield f"signature={value!r}", manifest_bundle({**GOOD, "signature": value})
        yield f"requirements={value!r}", manifest_bundle({**GOOD, "requirements": value})


def upload(hub, data, content_type="application/gzip"):
    return requests.post(
        f"{hub.publisher_url}api/models/alice/target/versions",
        data=data,
        headers={"Authorization": f"token {hub.alice}", "Content-Type": content_type},
        timeout=120,
    )


def test_broken_bundles_are_4xx_naming_the_problem_and_change_nothing(hub, tmp_path):
    before = client(hub, hub.alice).get("target")
    seen = 0
    for what, data in broken_uploads(tmp_path):
        answer = upload(hub, data)
        STATUSES[answer.status_code] += 1
        seen += 1
        assert 400 <= answer.status_code < 500, (what, answer.status_code, answer.text[:300])
        body = answer.json()
        assert set(body) == {"error", "code", "detail"} and body["error"], (what, body)
    assert seen > 70
    after = client(hub, hub.alice).get("target")
    assert after["current_version"] == before["current_version"]
    assert [v["id"] for v in after["versions"]] == [v["id"] for v in before["versions"]]
    predict = requests.post(
        f"{hub.url}models/alice/target/v1/predict",
        json={"instances": [[0.0, 0.0]]},
        headers={"Authorization": f"token {hub.alice}"},
    )
    assert predict.json() == {"predictions": [1.0]}


@given(
    data=st.binary(max_size=4096),
    content_type=st.sampled_from(
        ["application/gzip", "application/x-tar", "application/octet-stream", "text/plain", ""]
    ),
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_bytes_as_a_bundle_are_4xx(hub, data, content_type):
    answer = upload(hub, data, content_type)
    STATUSES[answer.status_code] += 1
    assert 400 <= answer.status_code < 500, answer.text[:300]
    assert json.loads(answer.text)["code"]
