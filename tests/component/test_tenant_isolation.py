"""Two people on one machine (multi-user mode: ``mlhub up`` as root, as CI runs it): everything
bob can try from his own kernel and terminal, as a browser runs them (over the kernel and
terminal websockets through the hub's proxy, with his own token), against alice and the
platform. Every attempt is denied, and alice's model keeps serving, her files unchanged.

The hub is the component layer's shared one (conftest.py: ``mlhub up`` with the accounts alice
and bob made by ``mlhub users add``). The paths bob tries are not a hand-picked list: every file
and folder of the data directory that is not his own (or the R library every R kernel loads).
"""

import hashlib
import json
import os
import pwd
import textwrap

import pytest
import requests
from support.embedded_hub import process_table, uid_of, wait_for
from support.kernel_channel import execute, run_in_terminal, start_kernel
from support.publishing import constant_bundle, model_pids, predict

pytestmark = [pytest.mark.component, pytest.mark.slow]

ALICE_NOTES = "alice's notes\n"
ALICE_SECRET = "alice's 0600 secret\n"


def account(user):
    return pwd.getpwnam(f"mlhub-{user}")


def kernel_pid(kernel_id):
    """The pid of the kernel process with id ``kernel_id`` (its connection file names it)."""
    return wait_for(
        lambda: next(
            (pid for pid, (_, cmd) in process_table().items() if f"kernel-{kernel_id}" in cmd),
            None,
        ),
        f"the process of kernel {kernel_id}",
    )


def her_files(workspace):
    """{name: sha256} of the files at the top of a workspace (read as root); Jupyter's own
    dot-folders change as kernels come and go."""
    return {
        entry.name: hashlib.sha256(open(entry.path, "rb").read()).hexdigest()
        for entry in os.scandir(workspace)
        if not entry.name.startswith(".")
    }


class Tenant:
    """One person with a running notebook server, a kernel and their hub token."""

    def __init__(self, hub, name):
        self.name = name
        self.token = getattr(hub, name)
        session = hub.login(name, hub.passwords[name])
        reply = hub.hub_api(session, "POST", f"/users/{name}/server", json={"profile": "python"})
        assert reply.status_code in (201, 202), reply.text
        hub.wait_ready(session, name)
        self.server_url = f"{hub.url}user/{name}"
        self.server_pid = hub.server_pid(name)
        self.kernel = start_kernel(self.server_url, self.token)
        self.kernel_pid = kernel_pid(self.kernel)

    def run(self, code):
        """Run ``code`` in this person's kernel; what it printed, parsed as JSON."""
        out = execute(self.server_url, self.kernel, textwrap.dedent(code), self.token)
        try:
            return json.loads(out.splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(f"the kernel printed no JSON:\n{out}") from None

    def terminal(self, *commands):
        return run_in_terminal(self.server_url, self.token, commands)


@pytest.fixture(scope="module")
def people(hub, tmp_path_factory):
    """alice (with files written by her kernel and a published model with a key) and bob."""
    alice, bob = Tenant(hub, "alice"), Tenant(hub, "bob")
    alice.run(
        f"""
        import json, os
        open("notes.txt", "w").write({ALICE_NOTES!r})
        fd = os.open("secret.txt", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, {ALICE_SECRET!r}.encode()); os.close(fd)
        print(json.dumps(os.getcwd()))
        """
    )
    bundle = constant_bundle(tmp_path_factory.mktemp("alice") / "bundle", 7.0)
    model = hub.client.publish(bundle, "churn")
    assert model["status"] == "ready"
    alice.key = hub.client.create_key("churn")["key"]
    alice.workspace = hub.workspace("alice")
    alice.files = her_files(alice.workspace)
    assert alice.files["secret.txt"] == hashlib.sha256(ALICE_SECRET.encode()).hexdigest()
    return alice, bob


def test_everyone_runs_as_their_own_account(hub, people):
    alice, bob = people
    assert uid_of(alice.server_pid) == uid_of(alice.kernel_pid) == account("alice").pw_uid
    assert uid_of(bob.server_pid) == uid_of(bob.kernel_pid) == account("bob").pw_uid
    whoami = bob.run(
        "import json, os, pwd; print(json.dumps([pwd.getpwuid(os.getuid())[0], "
        "os.environ['HOME'], os.getcwd()]))"
    )
    assert whoami == ["mlhub-bob", str(hub.workspace("bob")), str(hub.workspace("bob"))]
    workspace = os.stat(alice.workspace)
    assert (workspace.st_uid, oct(workspace.st_mode & 0o777)) == (account("alice").pw_uid, "0o700")
    # every process of alice's model (forked by the platform's fork server) is hers
    pids = model_pids(hub, "alice", "churn")
    assert pids and {uid_of(pid) for pid in pids} == {account("alice").pw_uid}


def test_bob_reads_writes_and_lists_nothing_of_alice_or_the_platform(hub, people):
    alice, bob = people
    data = hub.data_dir
    own = [data / "workspaces" / "bob", data / "models" / "bob", data / "access" / "bob"]
    everyone = [data / "R-library"]
    files, folders = [], [str(data)]
    for root, dirs, names in os.walk(data):
        for name in dirs + names:
            path = os.path.join(root, name)
            if any(path == str(p) or path.startswith(f"{p}/") for p in own + everyone):
                continue
            (folders if name in dirs else files).append(path)
    secrets = ["admin_password", "proxy_token", "jupyterhub_cookie_secret", "jupyterhub.sqlite"]
    assert {str(data / s) for s in secrets} <= set(files)
    assert str(alice.workspace / "secret.txt") in files
    assert any("/models/alice/churn/" in f for f in files)  # her unpacked bundle
    assert any("/access/alice/" in f for f in files)  # who may call her model

    got = bob.run(
        f"""
        import json, os
        files, folders = {files!r}, {folders!r}
        read, listed, wrote = [], [], []
        for path in files:
            try:
                with open(path, "rb") as f:
                    f.read(1)
                read.append(path)
            except OSError:
                pass
            try:
                with open(path, "ab"):
                    wrote.append(path)
            except OSError:
                pass
        for path in folders:
            try:
                os.listdir(path)
                listed.append(path)
            except OSError:
                pass
            try:
                with open(os.path.join(path, "bob-was-here"), "w"):
                    wrote.append(path)
            except OSError:
                pass
        print(json.dumps({{"read": read, "listed": listed, "wrote": wrote, "tried": len(files)}}))
        """
    )
    assert got["tried"] == len(files) > 20
    assert got == {"read": [], "listed": [], "wrote": [], "tried": len(files)}


def test_bob_finds_no_secret_in_other_processes_and_cannot_signal_them(hub, people):
    alice, bob = people
    hub_processes = {
        "the hub": hub.proc.pid,
        "alice's server": alice.server_pid,
        "alice's kernel": alice.kernel_pid,
        **{f"alice's model ({pid})": pid for pid in model_pids(hub, "alice", "churn")},
    }
    for pid, (_, cmd) in process_table().items():
        if "configurable-http-proxy" in cmd or "-m mlhub.publisher" in cmd:
            hub_processes[cmd.split()[-1]] = pid
    got = bob.run(
        f"""
        import json, os, signal
        found, signalled = {{}}, {{}}
        for what, pid in {hub_processes!r}.items():
            for name in ("environ", "mem", "fd"):
                try:
                    with open(f"/proc/{{pid}}/{{name}}", "rb") as f:
                        found[f"{{what}} {{name}}"] = len(f.read(1))
                except OSError:
                    pass
            try:
                os.listdir(f"/proc/{{pid}}/fd")
                found[f"{{what}} fds"] = 1
            except OSError:
                pass
            try:
                os.kill(pid, signal.SIGTERM)
                signalled[what] = "sent"
            except PermissionError:
                pass
        print(json.dumps({{"found": found, "signalled": signalled}}))
        """
    )
    assert got == {"found": {}, "signalled": {}}
    assert all(os.path.exists(f"/proc/{pid}") for pid in hub_processes.values())


def test_bob_cannot_use_the_proxy_api_or_take_over_alices_routes(hub, people):
    alice, bob = people
    url = f"http://127.0.0.1:{hub.proxy_api_port}/api/routes"
    got = bob.run(
        f"""
        import json, os, urllib.request, urllib.error
        answers = {{}}
        for method, path, body in [("GET", "", None),
                                   ("POST", "/models/alice/churn", b'{{"target": "http://127.0.0.1:1"}}'),
                                   ("DELETE", "/user/alice", None)]:
            for token in ("", os.environ["JUPYTERHUB_API_TOKEN"]):
                request = urllib.request.Request({url!r} + path, data=body, method=method,
                                                 headers={{"Authorization": f"token {{token}}"}})
                what = f"{{method}} {{path}} with{{'' if token else 'out'}} bob's token"
                try:
                    answers[what] = urllib.request.urlopen(request).status
                except urllib.error.HTTPError as e:
                    answers[what] = e.code
        print(json.dumps(answers))
        """
    )
    assert set(got.values()) == {403}, got
    assert predict(hub, "alice", "churn", alice.key).json() == {"predictions": [7.0]}


def test_the_model_port_and_alices_server_port_ask_for_credentials_too(hub, people):
    """Any local account can connect to 127.0.0.1 ports: the runtime and the notebook server
    authenticate there exactly as through the proxy."""
    alice, bob = people
    port = next(i["port"] for i in hub.client.get("churn")["instances"] if i["state"] == "live")
    server_url = hub.server_env("alice")["JUPYTERHUB_SERVICE_URL"]  # http://127.0.0.1:<port>/...
    got = bob.run(
        f"""
        import json, os, urllib.request, urllib.error
        def status(url, token=None, body=None):
            headers = {{"Content-Type": "application/json"}}
            if token:
                headers["Authorization"] = f"token {{token}}"
            request = urllib.request.Request(url, data=body, headers=headers)
            try:
                return urllib.request.urlopen(request).status
            except urllib.error.HTTPError as e:
                return e.code
        predict = "http://127.0.0.1:{port}/models/alice/churn/v1/predict"
        body = b'{{"instances": [[1.0, 2.0]]}}'
        contents = "{server_url}api/contents/secret.txt"
        print(json.dumps({{
            "model, no key": status(predict, body=body),
            "model, bob's token": status(predict, os.environ["JUPYTERHUB_API_TOKEN"], body),
            "alice's server, no token": status(contents),
            "alice's server, bob's token": status(contents, os.environ["JUPYTERHUB_API_TOKEN"]),
        }}))
        """
    )
    assert got == {
        "model, no key": 401,
        "model, bob's token": 403,
        "alice's server, no token": 403,
        "alice's server, bob's token": 403,
    }
    # the same port answers alice's key: it is her model's
    direct = requests.post(
        f"http://127.0.0.1:{port}/models/alice/churn/v1/predict",
        json={"instances": [[1.0, 2.0]]},
        headers={"Authorization": f"token {alice.key}"},
        timeout=30,
    )
    assert direct.json() == {"predictions": [7.0]}


def test_bobs_terminal_is_bob_and_gets_nothing_either(hub, people):
    alice, bob = people
    workspace = alice.workspace
    results = bob.terminal(
        "id -un",
        f"cat {workspace}/secret.txt",
        f"cat {hub.data_dir}/admin_password",
        f"ls {hub.data_dir}",
        f"touch {workspace}/bob-was-here",
        f"kill -TERM {alice.kernel_pid}",
        f"cat /proc/{alice.kernel_pid}/environ",
    )
    assert results[0] == ("mlhub-bob", 0)
    for output, status in results[1:]:
        assert status != 0 and ("Permission denied" in output or "not permitted" in output), output
    assert not (workspace / "bob-was-here").exists()


TROJAN = """
import json, os, pwd
import mlhub
import numpy as np

LOOT = {loot!r}
TARGETS = {targets!r}


def steal():
    # runs when the serving process unpickles the model
    import json, os, pwd
    from sklearn.dummy import DummyRegressor
    found = {{}}
    for path in TARGETS:
        try:
            with open(path) as f:
                found[path] = f.read()
        except OSError as e:
            found[path] = type(e).__name__
    with open(LOOT, "w") as f:
        json.dump({{"whoami": pwd.getpwuid(os.getuid())[0], "found": found}}, f)
    return DummyRegressor(strategy="constant", constant=1.0).fit(np.zeros((2, 2)), [0, 0])


class Trojan:
    def predict(self, rows):
        return np.ones(len(rows))

    def __reduce__(self):
        return (steal, ())


result = mlhub.publish(Trojan(), name="trojan", example=[[0.0, 0.0]], progress=lambda *a: None)
print(json.dumps(result.url))
"""


def test_a_model_bob_publishes_runs_as_bob_and_can_steal_nothing(hub, people):
    """bob's pickle copies the admin password and alice's files out when it is loaded: it is
    loaded by bob's own account, which reads none of them."""
    alice, bob = people
    loot = f"/tmp/mlhub-loot-{os.getpid()}.json"
    targets = [
        str(hub.data_dir / "admin_password"),
        str(hub.data_dir / "proxy_token"),
        str(hub.data_dir / "jupyterhub_cookie_secret"),
        str(alice.workspace / "secret.txt"),
        str(alice.workspace / "notes.txt"),
    ]
    try:
        url = bob.run(TROJAN.format(loot=loot, targets=targets))
        assert url == f"{hub.url}models/bob/trojan/"
        with open(loot) as f:
            stolen = json.load(f)
        assert os.stat(loot).st_uid == account("bob").pw_uid
    finally:
        if os.path.exists(loot):
            os.unlink(loot)
    assert stolen == {"whoami": "mlhub-bob", "found": dict.fromkeys(targets, "PermissionError")}
    assert {uid_of(pid) for pid in model_pids(hub, "bob", "trojan")} == {account("bob").pw_uid}


def test_alice_is_unharmed(hub, people):
    """After all of the above: alice's model serves her callers, her kernel runs, her files are
    what they were."""
    alice, bob = people
    assert predict(hub, "alice", "churn", alice.key).json() == {"predictions": [7.0]}
    assert os.path.exists(f"/proc/{alice.kernel_pid}")
    assert alice.run("import json; print(json.dumps(open('secret.txt').read()))") == ALICE_SECRET
    assert her_files(alice.workspace) == alice.files
