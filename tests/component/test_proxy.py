"""The embedded mode's public proxy (configurable-http-proxy from npm) as clients meet it, on a
real ``mlhub up``: requests reach their target with the headers the client sent (no type added
to a body that had none, one clean ``X-Forwarded-For``), a WebSocket keeps the subprotocol it
agreed on, a body over a model's limit gets the model's JSON 413 every time (with and without
``Expect: 100-continue``), and a client too slow with its headers or its body gets a 408 while
everyone else is served (``MlhubSettings.proxy_headers_timeout`` / ``proxy_request_timeout``,
short here).
"""

import base64
import hashlib
import json
import socket
import subprocess
import threading
import time

import pytest
import requests
import websocket
from support.embedded_hub import running_hub
from support.publishing import client, constant_bundle
from support.rmodels import formula_bundle
from support.standin_http import StandInHandler, StandInServer

pytestmark = [pytest.mark.component, pytest.mark.slow]

CONFIG = """
c.PublisherApp.default_workers = 1
c.MlhubSettings.proxy_headers_timeout = 3
c.MlhubSettings.proxy_request_timeout = 8
"""
SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's


class Echo(StandInHandler):
    """Answers with the request's headers and body as JSON; takes a WebSocket, choosing the
    first subprotocol the client offers (as jupyter_server does)."""

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            accept = base64.b64encode(
                hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest()
            ).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            offered = self.headers.get("Sec-WebSocket-Protocol", "")
            if offered:
                self.send_header("Sec-WebSocket-Protocol", offered.split(",")[0].strip())
            self.end_headers()
            self.wfile.flush()
            time.sleep(0.5)
            return
        self.echo(b"")

    def do_POST(self):
        self.echo(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def echo(self, body):
        answer = {"headers": dict(self.headers.items()), "body": body.decode()}
        self.reply(200, json.dumps(answer).encode(), "application/json")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("proxy"), CONFIG, ("alice",)) as hub:
        yield hub


@pytest.fixture(scope="module")
def echo(hub):
    """A route /echo/ on the public proxy to an echo server (added as the hub adds routes)."""
    with StandInServer(Echo) as server:
        token = (hub.data_dir / "proxy_token").read_text().strip()
        api = f"http://127.0.0.1:{hub.proxy_api_port}/api/routes/echo"
        added = requests.post(
            api, json={"target": server.url}, headers={"Authorization": f"token {token}"}
        )
        assert added.status_code == 201, added.text
        yield f"{hub.url}echo/"


@pytest.fixture(scope="module")
def model(hub, tmp_path_factory):
    """alice's model, with the serving runtime's default body limit (16 MB)."""
    client(hub, hub.alice).publish(constant_bundle(tmp_path_factory.mktemp("m") / "b", 1.0), "m")
    return f"{hub.url}models/alice/m/v1/predict"


def test_headers_reach_the_target_as_the_client_sent_them(echo, hub):
    sent = requests.post(
        echo,
        data=b'{"instances": [[1, 2]]}',
        headers={"X-Trace": "a b;c", "Authorization": "Bearer xyz"},
    ).json()
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert "content-type" not in headers  # no type added to a body sent without one
    assert headers["x-trace"] == "a b;c" and headers["authorization"] == "Bearer xyz"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == hub.url.split("/")[2]
    assert sent["body"] == '{"instances": [[1, 2]]}'


def test_a_websocket_keeps_its_subprotocol(echo):
    ws = websocket.create_connection(
        "ws" + echo[4:] + "ws", subprotocols=[SUBPROTOCOL, "other"], timeout=10
    )
    try:
        assert ws.getsubprotocol() == SUBPROTOCOL
    finally:
        ws.close()


def json_413(status, body):
    assert status == 413, body[:300]
    answer = json.loads(body)
    assert answer["code"] == "payload_too_large" and "limit" in answer["error"], answer


@pytest.fixture(scope="module")
def r_model(hub, tmp_path_factory):
    """alice's R model (plumber behind nginx), with the same default body limit."""
    client(hub, hub.alice).publish(formula_bundle(tmp_path_factory.mktemp("r") / "b"), "r")
    return f"{hub.url}models/alice/r/v1/predict"


@pytest.mark.parametrize("runtime", ["python", "r"])
@pytest.mark.parametrize("expect", ["", "100-continue"])
def test_a_body_over_the_limit_gets_the_json_413_every_time(
    hub, request, tmp_path, expect, runtime
):
    model = request.getfixturevalue("model" if runtime == "python" else "r_model")
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:  # 50 MB of JSON, over the runtime's 16 MB default
        fh.write(b'{"instances": [' + b"[1.0, 2.0], " * 4_500_000 + b"[1.0, 2.0]]}")
    for _ in range(5):
        done = subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--data-binary",
                f"@{big}",
                "-H",
                f"Authorization: token {hub.alice}",
                "-H",
                "Content-Type: application/json",
                "-H",
                f"Expect: {expect}",
                model,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        body, _, status = done.stdout.rpartition("\n")
        json_413(int(status), body)
    # and the model keeps serving
    row = [1.0, 2.0] if runtime == "python" else {"temp": 1, "pressure": 0, "line": "a", "count": 1}
    ok = requests.post(
        model, json={"instances": [row]}, headers={"Authorization": f"token {hub.alice}"}
    )
    assert ok.json() == {"predictions": [1.0 if runtime == "python" else 4.0]}


def slow_request(hub, request_line_and_headers, trickle):
    """Send ``request_line_and_headers`` then ``trickle`` one byte a second; what the proxy
    answered (status line and body) once it closed the connection."""
    host, port = hub.url.split("/")[2].split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    conn.sendall(request_line_and_headers)
    answer = b""
    try:
        for byte in trickle:
            conn.sendall(bytes([byte]))
            conn.settimeout(1)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
    except (BrokenPipeError, ConnectionResetError):
        pass
    conn.settimeout(5)
    try:
        while chunk := conn.recv(65536):
            answer += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    conn.close()
    return answer


def test_slow_clients_get_408_while_others_are_served(hub, model):
    auth = {"Authorization": f"token {hub.alice}"}
    served, stop = [], threading.Event()

    def others():  # a caller of the same model, all along
        while not stop.is_set():
            answer = requests.post(model, json={"instances": [[1.0, 2.0]]}, headers=auth)
            served.append(answer.status_code)
            time.sleep(0.2)

    caller = threading.Thread(target=others)
    caller.start()
    try:
        # headers that never end (3 s allowed)
        started = time.monotonic()
        answer = slow_request(
            hub, b"POST /models/alice/m/v1/predict HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 40
        )
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert time.monotonic() - started < 30
        # a body that never ends (8 s allowed for the whole request)
        head = (
            b"POST /models/alice/m/v1/predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n"
            b"Authorization: token " + hub.alice.encode() + b"\r\n\r\n"
        )
        answer = slow_request(hub, head, b'{"instances": [[1.0, 2.0]]' + b" " * 70)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    finally:
        stop.set()
        caller.join()
    assert len(served) > 10 and set(served) == {200}


def test_api_clients_get_json_for_any_method(hub, model):
    """Methods a route does not take (TRACE included) are JSON 405s naming the right one, from
    the model and from the publisher alike: no HTML page reaches an API client."""
    auth = {"Authorization": f"token {hub.alice}"}
    for url in (model, f"{hub.publisher_url}api/models"):
        for method in ("TRACE", "PATCH", "DELETE"):
            answer = requests.request(method, url, headers=auth)
            assert answer.status_code == 405, (method, url, answer.text[:200])
            assert answer.headers["Content-Type"].startswith("application/json"), answer.text
            assert answer.json()["error"], answer.text
