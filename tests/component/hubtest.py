"""Real JupyterHub + proxy + publisher processes for component tests (see conftest.py).

``Hub`` writes a hub config on free 127.0.0.1 ports, starts and stops it, and talks to the hub
API with its ``test-admin`` service token; the helpers read /proc to find and check processes.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests
from mlhub.deployers.local import ServingInstance

VENV_BIN = Path(sys.executable).parent
PUBLISHER = "mlhub-publisher"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, timeout=120.0, interval=0.25):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` on timeout.

    The timeout only guards against hanging; no test asserts on how long anything took.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (requests.RequestException, OSError, ValueError, KeyError) as exc:
            result, last = None, exc
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def children(pid):
    """Pids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


HUB_CONFIG = """\
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.ConfigurableHTTPProxy.command = ["{venv_bin}/configurable-http-proxy"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = "{proxy_token}"
c.ConfigurableHTTPProxy.pid_file = "{dir}/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.custom_scopes = {{
    "custom:mlhub:models": {{"description": "Publish and manage your own models"}},
    "custom:mlhub:admin": {{"description": "Manage everyone's models"}},
}}
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services", "custom:mlhub:models"]}},
    {{
        "name": "mlhub-test-admin",
        "scopes": ["admin:users", "tokens", "custom:mlhub:admin", "access:services"],
        "services": ["test-admin"],
    }},
]
c.JupyterHub.services = [
    {{
        "name": "{publisher}",
        "url": "http://127.0.0.1:{publisher_port}",
        "command": ["{python}", "-m", "mlhub.publisher"],
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": ["custom:mlhub:models", "custom:mlhub:admin"],
        "environment": {{
            "MLHUB_DATA_DIR": "{data_dir}",
            "MLHUB_CONFIG_FILE": "{dir}/mlhub_config.py",
            "CONFIGPROXY_AUTH_TOKEN": "{proxy_token}",
            "MLHUB_PROXY_API_URL": "http://127.0.0.1:{proxy_api_port}",
            "MLHUB_PUBLIC_URL": "http://127.0.0.1:{public_port}/",
        }},
    }},
    {{"name": "test-admin", "api_token": "{admin_token}"}},
]
"""


class Hub:
    """A JupyterHub (with proxy and publisher) in ``dir``, restartable on the same ports."""

    def __init__(self, dir, publisher_config="", hub_config=""):
        self.dir = Path(dir)
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.public_port, self.hub_port = free_port(), free_port()
        self.proxy_api_port, self.publisher_port = free_port(), free_port()
        self.proxy_token = os.urandom(16).hex()
        self.admin_token = os.urandom(16).hex()
        self.url = f"http://127.0.0.1:{self.public_port}/"
        self.api_url = f"{self.url}hub/api"
        self.proxy_api_url = f"http://127.0.0.1:{self.proxy_api_port}"
        self.publisher_url = f"{self.url}services/{PUBLISHER}/"
        self.config_file = self.dir / "jupyterhub_config.py"
        values = {
            k: v for k, v in vars(self).items() if isinstance(v, (str, int, Path)) and k != "url"
        }
        config = HUB_CONFIG.format(
            venv_bin=VENV_BIN, python=sys.executable, publisher=PUBLISHER, **values
        )
        self.config_file.write_text(config + textwrap.dedent(hub_config))
        (self.dir / "mlhub_config.py").write_text(textwrap.dedent(publisher_config))
        self.proc = None

    def start(self, timeout=120):
        log = open(self.dir / "jupyterhub.log", "ab")  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(self.config_file)],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(self.publisher_up, f"the hub and publisher in {self.dir}", timeout)
        return self

    def publisher_up(self):
        """Whether the publisher answers through the proxy (raises if the hub died)."""
        if self.proc.poll() is not None:
            raise AssertionError(f"jupyterhub exited ({self.proc.returncode}):\n{self.log_tail()}")
        return requests.get(self.publisher_url + "api/health", timeout=5).status_code == 200

    def log_tail(self, n=60):
        lines = (self.dir / "jupyterhub.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self, timeout=60):
        """SIGTERM the hub (it stops the publisher and the proxy) and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def publisher_pid(self):
        """The pid of the publisher the hub runs now (None if it runs none)."""
        pids = [p for p in children(self.proc.pid) if "mlhub.publisher" in cmdline(p)]
        return pids[0] if pids else None

    def kill_leftovers(self):
        """Kill model processes still recorded in the data dir, and a stray publisher/proxy."""
        for path in self.data_dir.glob("run/*/*.json"):
            data = json.loads(path.read_text())
            for inst in filter(None, [data.get("live"), *data.get("others", [])]):
                for pid in ServingInstance.from_dict(inst).leftovers():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for pid_file in (self.dir / "proxy.pid",):
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass

    # ------------------------------------------------------------ hub API

    def api(self, method, path, token=None, **kwargs):
        headers = {"Authorization": f"token {token or self.admin_token}"}
        resp = requests.request(method, self.api_url + path, headers=headers, timeout=30, **kwargs)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def add_user(self, name, admin=False):
        self.api("POST", f"/users/{name}", json={"admin": admin})
        return name

    def token(self, user, scopes=None):
        """A new API token of ``user`` (the user's own permissions unless ``scopes``)."""
        body = {"note": "component test"}
        if scopes is not None:
            body["scopes"] = scopes
        return self.api("POST", f"/users/{user}/tokens", json=body)["token"]
