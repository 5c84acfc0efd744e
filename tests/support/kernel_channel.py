"""Run code in a Jupyter kernel, or commands in a Jupyter terminal, over a server's websockets,
as JupyterLab does (tests only)."""

import json
import re
import time
import uuid

import requests
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


def start_kernel(server_url, token, name="python3"):
    """A new kernel of the Jupyter server at ``server_url`` (REST, as JupyterLab); its id."""
    reply = requests.post(
        f"{server_url}/api/kernels",
        json={"name": name},
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )
    reply.raise_for_status()
    return reply.json()["id"]


_DONE = re.compile(r"__MLHUB_DONE_(\d+)__")
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal control (bracketed paste, colours)


def run_in_terminal(server_url, token, commands, timeout=60):
    """Run shell ``commands`` one by one in a new terminal of the Jupyter server at
    ``server_url`` (terminado's websocket protocol, as JupyterLab's terminal); return
    ``[(output, exit status), ...]``. After each command the shell prints an end marker with
    its status; as typed (and echoed) the marker reads ``$?`` and ``''``, so only the shell's
    own output matches."""
    auth = {"Authorization": f"token {token}"}
    created = requests.post(f"{server_url}/api/terminals", headers=auth, timeout=60)
    created.raise_for_status()
    name = created.json()["name"]
    ws = websocket.create_connection(
        f"ws{server_url[4:]}/terminals/websocket/{name}",
        header=[f"Authorization: token {token}"],
        timeout=timeout,
    )
    results = []
    try:
        # first: no echo of what is typed, no prompt (its output is dropped below)
        for command in ["stty -echo; PS1=''", *commands]:
            ws.send(json.dumps(["stdin", f"{command}; echo __MLHUB_DONE_$?_''_\r"]))
            text, deadline = "", time.monotonic() + timeout
            while not (done := _DONE.search(text)):
                if time.monotonic() > deadline:
                    raise AssertionError(f"no end of {command!r} in the terminal: {text!r}")
                kind, *rest = json.loads(ws.recv())
                if kind == "stdout":
                    text += _ESCAPES.sub("", rest[0]).replace("\r", "")
            results.append((text[: done.start()].strip(), int(done.group(1))))
    finally:
        ws.close()
        requests.delete(f"{server_url}/api/terminals/{name}", headers=auth, timeout=60)
    return results[1:]
