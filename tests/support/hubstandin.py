"""A stand-in for JupyterHub's ``GET /hub/api/user`` and the publisher's access file: what a
serving runtime (Python or R) consults to decide who may call a model.

``HubStandIn`` is a fake on purpose: these tests check the serving runtimes' own rules (owner,
shared users and groups, API keys), not the hub, which test_hub_embedded.py runs for real.
"""

import hashlib
import json
import os
from pathlib import Path

from support.standin_http import StandInHandler, StandInServer


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


# Who calls the models of the serving tests (alice's): the owner, bob in the group the model is
# shared with, eve in another group, and a service named like the owner (which is not her).
PEOPLE = {
    "hub-token-alice": {"kind": "user", "name": "alice", "groups": []},
    "hub-token-bob": {"kind": "user", "name": "bob", "groups": ["analysts"]},
    "hub-token-eve": {"kind": "user", "name": "eve", "groups": ["others"]},
    "hub-token-svc": {"kind": "service", "name": "alice", "groups": []},
}


class HubStandIn(StandInServer):
    """Stands in for JupyterHub's ``GET /hub/api/user``: token -> user model, else 403."""

    def __init__(self, users=PEOPLE):
        self.users = users
        self.calls = 0
        stand_in = self

        class Handler(StandInHandler):
            def do_GET(self):
                stand_in.calls += 1
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                user = stand_in.users.get(token) if scheme == "token" else None
                if self.path != "/hub/api/user" or user is None:
                    self.reply(403)
                    return
                self.reply(200, json.dumps(user).encode(), "application/json")

        super().__init__(Handler)
        self.api_url = f"{self.url}/hub/api"


KEY = "mlhk_serving-test-key"  # the API key conftest.py's ``access_file`` lets in


def write_access(path, users=(), groups=(), keys=()):
    tmp = Path(f"{path}.tmp")
    tmp.write_text(
        json.dumps(
            {"users": list(users), "groups": list(groups), "key_hashes": [sha(k) for k in keys]}
        )
    )
    os.replace(tmp, path)
