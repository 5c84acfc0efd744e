"""A stand-in for JupyterHub's ``GET /hub/api/user`` and the publisher's access file: what a
serving runtime (Python or R) consults to decide who may call a model.

``HubStandIn`` is a fake on purpose: these tests check the serving runtimes' own rules (owner,
shared users and groups, API keys), not the hub, which test_hub_embedded.py runs for real.
"""

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


class HubStandIn:
    """Stands in for JupyterHub's ``GET /hub/api/user``: token -> user model, else 403."""

    def __init__(self, users):
        self.users = users
        self.calls = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                stand_in.calls += 1
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                user = stand_in.users.get(token) if scheme == "token" else None
                if self.path != "/hub/api/user" or user is None:
                    self.send_response(403)
                    self.end_headers()
                    return
                body = json.dumps(user).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hub/api"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def write_access(path, users=(), groups=(), keys=()):
    tmp = Path(f"{path}.tmp")
    tmp.write_text(
        json.dumps(
            {"users": list(users), "groups": list(groups), "key_hashes": [sha(k) for k in keys]}
        )
    )
    os.replace(tmp, path)
