"""Run code in a Jupyter kernel over a server's websocket, as JupyterLab does (tests only)."""

import json
import uuid

import websocket


def execute(server_url, kernel_id, code, token, timeout=90):
    """Run ``code`` in kernel ``kernel_id`` of the Jupyter server at ``server_url`` (http(s)://
    ...; through the hub proxy or direct) with ``token``; return what it printed, or the
    traceback if it raised."""
    ws = websocket.create_connection(
        f"ws{server_url[4:]}/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {token}"],
        timeout=timeout,
    )
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "allow_stdin": False},
                "channel": "shell",
            }
        )
    )
    printed = []
    try:
        while True:
            msg = json.loads(ws.recv())
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                return "\n".join(msg["content"]["traceback"])
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(printed).strip()
    finally:
        ws.close()
