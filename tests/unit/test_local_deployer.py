"""LocalDeployer with a behavioural fake server instead of uWSGI (like JupyterHub's MockSpawner).

The fake is a tiny HTTP server that answers ``<prefix>/readyz`` with its version, can be told
to crash at start or never become ready, and exits on SIGTERM. Routes go to an in-memory proxy.
The real serving runtime is exercised by the component tests.
"""

import asyncio
import json
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import pytest
from support.embedded_hub import passable

from mlhub import limits, rlang
from mlhub.deployers import launcher
from mlhub.deployers.base import Desired, ModelRef, Serving
from mlhub.deployers.local import LocalDeployer
from mlhub.deployers.processes import ServingInstance, tail_lines
from mlhub.deployers.routes import ProxyRoutes
from mlhub.errors import BadRequest, DeployError, InvalidBundle
from mlhub.limits import Limits
from mlhub.serving_r import launch as r_launch

FAKE_SERVER = textwrap.dedent(
    """
    import http.server, json, os, signal, sys
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "crash":
        print("fake: cannot load the model", flush=True)
        sys.exit(3)
    version = os.environ["MLHUB_MODEL_VERSION"]
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if mode == "broken":  # what the serving runtime answers when its model fails
                body = json.dumps({"error": "the model is not loaded: UnpicklingError: bad",
                                   "code": "not_ready",
                                   "detail": {"reason": "UnpicklingError: bad"}}).encode()
                self.send_response(503); self.end_headers(); self.wfile.write(body); return
            if mode == "never-ready" or not self.path.endswith("/readyz"):
                self.send_response(503); self.end_headers(); return
            body = json.dumps({"status": "ready", "version": version}).encode()
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", port), H)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(f"fake: serving {version} on {port}", flush=True)
    server.serve_forever()
    """
)


class MemoryRoutes(ProxyRoutes):
    """The proxy's route table, in memory."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.table = {}

    async def add(self, path, target, **data):
        self.table[path] = {"target": target, "mlhub": True, **data}

    async def delete(self, path):
        self.table.pop(path, None)

    async def get_all(self):
        return dict(self.table)


MODEL = ModelRef("alice", "iris")
V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def bundle(tmp_path, name="b"):
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    (path / "mlhub.yaml").write_text(
        "format: 1\nname: iris\nruntime: python\nflavor: sklearn\nmodel_file: mlhub.yaml\n"
    )
    return str(path)


def make_deployer(tmp_path, mode="ok", **traits):
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    settings = {
        "data_dir": str(tmp_path / "data"),
        "serve_commands": {"python": [sys.executable, str(script), "{port}", mode]},
        "drain_seconds": 0.1,
        "stop_timeout": 5,
        "ready_timeout": 10,
        "supervise_interval": 0.1,
        "routes": MemoryRoutes(),
        "fallback_target": "",
        "fork_server": False,  # the fork server is a real process: tests/component
    }
    deployer = LocalDeployer(**{**settings, **traits})
    deployer.events = []
    deployer.on_event = lambda model, version, step, message, level: deployer.events.append(step)
    return deployer


class Progress(list):
    def __call__(self, step, message):
        self.append(step)


def live_pid(deployer):
    return deployer.processes(MODEL).live.pid


async def wait_until(check):
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


@pytest.fixture
async def deployer(tmp_path):
    d = make_deployer(tmp_path)
    yield d
    d.stop_models_on_exit = True
    await d.shutdown()


async def test_deploy_then_rolling_update(deployer, tmp_path):
    progress = Progress()
    await deployer.deploy(MODEL, V1, bundle(tmp_path), replicas=2, progress=progress)
    assert progress == ["starting", "ready", "switched", "drained"]
    first = deployer.processes(MODEL).live
    route = deployer.routes.table["/models/alice/iris"]
    assert route["target"] == f"http://127.0.0.1:{first.port}"
    assert route["mlhub"] is True and "jupyterhub" not in route

    progress.clear()
    await deployer.deploy(MODEL, V2, bundle(tmp_path), replicas=2, progress=progress)
    assert progress == ["starting", "ready", "switched", "drained"]
    second = deployer.processes(MODEL).live
    assert second.version == V2 and second.port != first.port
    assert not first.alive(), "the old instance is stopped after draining"
    assert deployer.routes.table["/models/alice/iris"]["target"].endswith(f":{second.port}")
    status = await deployer.status(MODEL)
    assert status["state"] == "running" and status["version"] == V2 and status["replicas"] == 2
    run = json.loads(deployer.run_file(MODEL).read_text())
    assert run["live"]["pid"] == second.pid and run["others"] == []


async def test_failed_start_keeps_the_old_version(deployer, tmp_path):
    await deployer.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    old = deployer.processes(MODEL).live
    deployer.serve_commands = {"python": [*deployer.serve_commands["python"][:3], "crash"]}
    with pytest.raises(DeployError) as info:
        await deployer.deploy(MODEL, V2, bundle(tmp_path), replicas=1, progress=Progress())
    assert "exited with code 3 before it was ready" in info.value.message
    assert "fake: cannot load the model" in info.value.message, "the log tail says why"
    assert deployer.processes(MODEL).live is old and old.alive()
    assert deployer.routes.table["/models/alice/iris"]["target"].endswith(f":{old.port}")


async def test_not_ready_in_time(tmp_path):
    d = make_deployer(tmp_path, mode="never-ready", ready_timeout=0.5)
    with pytest.raises(DeployError, match="not ready after 0.5 s"):
        await d.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    assert d.processes(MODEL).others == [], "the unready process was stopped"
    assert "/models/alice/iris" not in d.routes.table
    await d.shutdown()


def r_bundle(tmp_path):
    path = tmp_path / "r"
    (path / "model").mkdir(parents=True)
    (path / "model" / "model.rds").write_bytes(b"RDS")
    (path / "mlhub.yaml").write_text(
        "format: 1\nname: iris\nruntime: r\nflavor: rds\nserialization: rds\n"
        "model_file: model/model.rds\nr_version: '4.2.2'\n"
    )
    return str(path)


async def test_prepare_starts_the_version_its_deploy_switches_to(deployer, tmp_path):
    await deployer.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    old = deployer.processes(MODEL).live
    path = bundle(tmp_path, "v2")
    await deployer.prepare(MODEL, V2, path, replicas=1)
    (prepared,) = deployer.processes(MODEL).prepared
    assert prepared.alive() and prepared.version == V2
    assert deployer.routes.table["/models/alice/iris"]["target"].endswith(f":{old.port}")

    await deployer.deploy(MODEL, V2, path, replicas=1, progress=Progress())
    live = deployer.processes(MODEL).live
    assert live.pid == prepared.pid, "the deploy switched to the prepared process, no new start"
    assert deployer.routes.table["/models/alice/iris"]["target"].endswith(f":{live.port}")
    assert not old.alive() and deployer.processes(MODEL).prepared == []


async def test_a_first_publish_starts_with_an_owner_only_access_file(deployer, tmp_path):
    """The serving process of a first publish finds its access file from the start (the
    publisher writes the full list when it accepts the version); a refused one leaves none."""
    deployer.serve_commands = {"python": [*deployer.serve_commands["python"][:3], "broken"]}
    with pytest.raises(InvalidBundle):
        await deployer.prepare(MODEL, V1, bundle(tmp_path), replicas=1)
    assert not deployer.access_file(MODEL).exists()
    fresh = make_deployer(tmp_path)
    await fresh.prepare(MODEL, V1, bundle(tmp_path, "v1b"), replicas=1)
    access = json.loads(fresh.access_file(MODEL).read_text())
    assert access == {"users": ["alice"], "groups": [], "key_hashes": []}
    await fresh.shutdown()


async def test_a_model_that_does_not_load_is_refused_by_its_readiness(deployer, tmp_path):
    await deployer.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    old = deployer.processes(MODEL).live
    deployer.serve_commands = {"python": [*deployer.serve_commands["python"][:3], "broken"]}
    with pytest.raises(InvalidBundle) as info:
        await deployer.prepare(MODEL, V2, bundle(tmp_path, "v2"), replicas=1)
    assert info.value.message == "the new version cannot serve: UnpicklingError: bad"
    state = deployer.processes(MODEL)
    assert state.live is old and old.alive() and state.others == [] and state.prepared == []
    assert deployer.routes.table["/models/alice/iris"]["target"].endswith(f":{old.port}")


async def test_a_taken_port_is_retried_on_another(deployer, tmp_path, monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    ports = [port]
    real = launcher.free_port
    monkeypatch.setattr(launcher, "free_port", lambda host: ports.pop() if ports else real(host))
    with taken:
        await deployer.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    live = deployer.processes(MODEL).live
    assert live.port != port and live.alive()
    assert "Address already in use" in deployer.log_file(MODEL).read_text()


async def test_serving_settings_reach_the_serving_process(deployer, tmp_path):
    batching = Serving(batching={"max_size": 8, "max_wait_ms": 1})
    await deployer.deploy(
        MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress(), serving=batching
    )
    raw = Path(f"/proc/{live_pid(deployer)}/environ").read_bytes().decode()
    environ = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    assert environ["MLHUB_BATCHING"] == "on"
    assert environ["MLHUB_BATCH_MAX_SIZE"] == "8" and environ["MLHUB_BATCH_MAX_WAIT_MS"] == "1"


def test_free_port_is_below_the_ephemeral_range():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(1024 <= launcher.free_port("127.0.0.1") < low for _ in range(20))


async def test_unknown_runtime_is_refused(deployer, tmp_path):
    with pytest.raises(InvalidBundle, match="runtime 'r' cannot be served here"):
        await deployer.deploy(MODEL, V1, r_bundle(tmp_path), replicas=1, progress=Progress())


async def test_a_runtime_whose_program_is_missing_says_how_to_install_it(tmp_path):
    """An R model on a machine without R: the publisher is told to install R's packages."""
    deployer = make_deployer(
        tmp_path, check_commands={"r": ["no-such-Rscript", "check", "{bundle}"]}
    )
    manifest = {"runtime": "r"}
    with pytest.raises(InvalidBundle, match="no-such-Rscript is not installed") as caught:
        await deployer.check(manifest, r_bundle(tmp_path))
    assert "apt-get install r-base-core r-cran-plumber" in caught.value.message
    assert caught.value.detail["missing"] == "no-such-Rscript"


def test_r_is_served_by_the_plumber_runtime_by_default(tmp_path):
    """The launcher the serving-r image runs: {workers} plumber processes behind nginx."""
    deployer = LocalDeployer(data_dir=str(tmp_path))
    serve = deployer.serve_commands["r"]
    assert serve[:3] == [sys.executable, "-m", "mlhub.serving_r.launch"] and "{port}" in serve
    assert serve[serve.index("--workers") + 1] == "{workers}"
    assert deployer.check_commands == {}  # the serving process is the load check
    assert rlang.serve_script().is_file()


async def test_r_model_without_r_says_how_to_install_it(tmp_path, monkeypatch):
    """The launcher is Python, so R itself is checked: an R model on a machine without R is
    refused with the Debian packages to install."""
    monkeypatch.setattr(launcher, "_RUNTIME_PROGRAMS", {"r": "no-such-Rscript"})
    deployer = make_deployer(tmp_path, serve_commands=LocalDeployer().serve_commands)
    with pytest.raises(InvalidBundle, match="no-such-Rscript is not installed") as caught:
        await deployer.deploy(MODEL, V1, r_bundle(tmp_path), replicas=1, progress=Progress())
    assert "apt-get install r-base-core" in caught.value.message
    assert deployer.processes(MODEL).instances() == []


async def test_r_replicas_without_nginx_are_refused_not_served_by_fewer(tmp_path, monkeypatch):
    """Without nginx an R model serves one plumber process: more replicas are refused, with
    what to install, before anything starts (the publisher asks before a scale too)."""
    monkeypatch.setattr(r_launch, "find_nginx", lambda: None)
    deployer = make_deployer(tmp_path, serve_commands=LocalDeployer().serve_commands)
    r = {"runtime": "r"}
    deployer.check_replicas(r, 1)
    deployer.check_replicas({"runtime": "python"}, 3)
    with pytest.raises(BadRequest, match="apt-get install nginx-light") as caught:
        deployer.check_replicas(r, 3)
    assert caught.value.detail == {"field": "replicas", "runtime": "r", "missing": "nginx"}
    with pytest.raises(BadRequest, match="3 R processes behind nginx"):
        await deployer.deploy(MODEL, V1, r_bundle(tmp_path), replicas=3, progress=Progress())
    assert deployer.processes(MODEL).instances() == []


async def test_crashed_process_is_restarted(deployer, tmp_path):
    await deployer.adopt([])  # starts the supervisor
    await deployer.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    pid = live_pid(deployer)
    os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: "restarted" in deployer.events)
    assert deployer.events[:2] == ["restarting", "restarted"]
    state = deployer.processes(MODEL)
    assert state.live.pid != pid and state.live.alive() and state.live.version == V1
    assert deployer.routes.table["/models/alice/iris"]["target"].endswith(f":{state.live.port}")


async def test_a_process_that_dies_loses_its_route_at_once(deployer, tmp_path):
    """Not at the supervisor's next check (there is no supervisor here): the moment it ends, so
    no caller is sent to a port it gave up, which any local account could bind meanwhile."""
    await deployer.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    assert "/models/alice/iris" in deployer.routes.table
    os.kill(live_pid(deployer), signal.SIGKILL)
    await wait_until(lambda: "/models/alice/iris" not in deployer.routes.table)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another account")
async def test_a_port_another_account_listens_on_is_never_routed(tmp_path):
    """The server answering on the new instance's port is another account's (nobody's, here
    the whole serve command, standing in for a squatter that bound the port first and answers
    /readyz with the right version): the publish fails, and no route points there."""
    d = make_deployer(tmp_path)
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    d.serve_commands = {"python": [*as_nobody, *d.serve_commands["python"]]}
    (tmp_path / "data").mkdir()
    passable(tmp_path)  # nobody runs the fake server from here
    os.chmod(tmp_path / "fake_server.py", 0o644)
    with pytest.raises(
        DeployError,
        match=r"not \(or no longer\) held by its serving process but by uid\(s\) \[65534\]",
    ):
        await d.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    assert "/models/alice/iris" not in d.routes.table
    await d.shutdown()


async def test_adopt_running_process_keeps_its_pid(tmp_path):
    first = make_deployer(tmp_path, stop_models_on_exit=False)
    await first.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    pid = live_pid(first)
    await first.shutdown()  # like a publisher restart: the process keeps running

    second = make_deployer(tmp_path)
    await second.adopt([Desired(MODEL, V1, bundle(tmp_path), 1)])
    assert second.events == ["adopted"]
    assert live_pid(second) == pid
    assert second.routes.table["/models/alice/iris"]["target"].endswith(
        f":{second.processes(MODEL).live.port}"
    )
    await second.shutdown()
    assert not second.processes(MODEL).live.alive()


async def test_adopt_restarts_dead_and_mismatched_processes(tmp_path):
    first = make_deployer(tmp_path, stop_models_on_exit=False)
    await first.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    old = first.processes(MODEL).live
    await first.shutdown()

    second = make_deployer(tmp_path)
    # the store wants V2 now: the V1 process must go and V2 be started
    await second.adopt([Desired(MODEL, V2, bundle(tmp_path), 1)])
    assert second.events == ["restarting", "restarted"]
    await wait_until(lambda: not old.alive())
    assert second.processes(MODEL).live.version == V2
    await second.shutdown()


async def test_adopt_stops_processes_of_unpublished_models(tmp_path):
    first = make_deployer(tmp_path, stop_models_on_exit=False)
    await first.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    old = first.processes(MODEL).live
    await first.shutdown()

    second = make_deployer(tmp_path)
    await second.adopt([])
    await wait_until(lambda: not old.alive())
    assert not second.run_file(MODEL).exists()
    await second.shutdown()


async def test_scale_is_a_rolling_replace(deployer, tmp_path):
    await deployer.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    before = deployer.processes(MODEL).live
    progress = Progress()
    await deployer.scale(MODEL, 3, progress)
    after = deployer.processes(MODEL).live
    assert progress == ["starting", "ready", "switched", "drained"]
    assert after.workers == 3 and after.version == V1 and not before.alive()


async def test_rollback_uses_the_current_replicas(deployer, tmp_path):
    await deployer.deploy(MODEL, V2, bundle(tmp_path), replicas=2, progress=Progress())
    await deployer.rollback(MODEL, V1, bundle(tmp_path), Progress())
    live = deployer.processes(MODEL).live
    assert live.version == V1 and live.workers == 2


async def test_delete_stops_everything_and_removes_state(deployer, tmp_path):
    await deployer.set_access(MODEL, {"users": ["alice"], "groups": [], "key_hashes": []})
    await deployer.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    inst = deployer.processes(MODEL).live
    await deployer.delete(MODEL)
    assert not inst.alive()
    assert "/models/alice/iris" not in deployer.routes.table
    for path in (deployer.run_file(MODEL), deployer.access_file(MODEL), deployer.log_file(MODEL)):
        assert not path.exists()
    assert (await deployer.status(MODEL))["state"] == "stopped"


async def test_access_file_is_replaced_atomically(deployer):
    await deployer.set_access(MODEL, {"users": ["alice"], "groups": [], "key_hashes": ["ab"]})
    path = deployer.access_file(MODEL)
    inode = path.stat().st_ino
    await deployer.set_access(MODEL, {"users": ["alice", "bob"], "groups": [], "key_hashes": []})
    assert json.loads(path.read_text())["users"] == ["alice", "bob"]
    assert path.stat().st_ino != inode, "written to a new file and renamed into place"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_serving_environment_has_no_publisher_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-s3cr3t")
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "proxy-s3cr3t")
    monkeypatch.setenv("SOME_PASSWORD", "pw")
    deployer = make_deployer(tmp_path, extra_env={"MLHUB_REQUEST_TIMEOUT": "30"})
    env = deployer.launcher.env(ModelRef("bob.smith", "iris"), V1, Serving())
    assert "s3cr3t" not in " ".join(env.values()) and "SOME_PASSWORD" not in env
    assert env["MLHUB_URL_PREFIX"] == "/models/bob.smith/iris"
    assert env["MLHUB_MODEL_VERSION"] == V1 and env["MLHUB_AUTH"] == "on"
    assert env["MLHUB_ACCESS_FILE"].endswith("access/bob%2Esmith/iris.json")
    assert env["MLHUB_REQUEST_TIMEOUT"] == "30"


def test_owner_dir_is_one_safe_path_component():
    assert ModelRef("..", "x").owner_dir == "%2E%2E"
    assert ModelRef("a/b", "x").owner_dir == "a%2Fb"
    assert ModelRef("alice@example.org", "x").owner_dir == "alice@example%2Eorg"


def test_tail_lines(tmp_path):
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail_lines(path, 2) == "line 98\nline 99\n"
    assert tail_lines(tmp_path / "missing", 5) == ""


async def test_models_stopped_on_exit_are_started_again_without_alarm(tmp_path):
    first = make_deployer(tmp_path)  # stop_models_on_exit defaults to True
    await first.deploy(MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress())
    old = first.processes(MODEL).live
    await first.shutdown()
    assert not old.alive()

    second = make_deployer(tmp_path)
    levels = []
    second.on_event = lambda model, version, step, message, level: levels.append((step, level))
    await second.adopt([Desired(MODEL, V1, bundle(tmp_path), 1)])
    assert levels == [("restarting", "info"), ("restarted", "info")]
    assert second.processes(MODEL).live.alive()
    await second.shutdown()


async def test_a_recycled_pid_is_never_signalled(deployer, tmp_path):
    # a run-state file naming a pid that now belongs to another process (here: this test)
    stranger = ServingInstance(V1, bundle(tmp_path), 1, os.getpid(), 1, 0.0)
    assert not stranger.alive() and stranger.leftovers() == []
    await deployer.launcher.stop(stranger)  # we are still here


def test_publish_limits_map_to_local_limits_and_requests_to_nothing():
    resources = {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "1.5Gi"},
    }
    one = limits.replica_limits(resources)
    assert one == Limits(mem_limit=3 * 512 * 1024**2, cpu_limit=0.5)
    assert limits.instance_limits(one, 3) == Limits(mem_limit=9 * 512 * 1024**2, cpu_limit=1.5)
    assert limits.replica_limits({"requests": {"memory": "1Gi"}}) == Limits()
    assert limits.replica_limits(None) == Limits()
    assert limits.replica_limits({"limits": {"memory": "2G"}}).mem_limit == 2_000_000_000


def data_limit(pid):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max data size"):
            return line.split()[3]
    raise AssertionError(f"no data size limit in /proc/{pid}/limits")


async def test_memory_limit_without_cgroups_is_each_processs_rlimit(tmp_path):
    """``limit_method = "rlimit"`` (what ``auto`` falls back to without writable cgroups): each
    serving process gets one replica's memory limit as RLIMIT_DATA; a model without limits gets
    none, nor does any with ``limit_method = "none"``."""
    deployer = make_deployer(tmp_path, limit_method="rlimit")
    limited = Serving(resources={"limits": {"memory": "300Mi"}})
    await deployer.deploy(
        MODEL, V1, bundle(tmp_path), replicas=2, progress=Progress(), serving=limited
    )
    assert data_limit(live_pid(deployer)) == str(300 * 1024**2)
    assert deployer.processes(MODEL).live.cgroup is None
    assert "with RLIMIT_DATA 314572800 per process" in deployer.log_file(MODEL).read_text()
    requested = Serving(resources={"requests": {"memory": "300Mi"}})
    await deployer.deploy(
        MODEL, V1, bundle(tmp_path), replicas=1, progress=Progress(), serving=requested
    )
    assert data_limit(live_pid(deployer)) == "unlimited"
    deployer.limit_method = "none"
    await deployer.deploy(
        MODEL, V1, bundle(tmp_path), replicas=2, progress=Progress(), serving=limited
    )
    assert data_limit(live_pid(deployer)) == "unlimited"
    await deployer.shutdown()
