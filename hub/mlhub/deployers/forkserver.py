"""The local deployer's side of the fork server (``mlhub.serving.forkserver``): start it, ask it
for a model's uWSGI master, stop it.

A Python model whose start fits (the Python runtime, a model loaded once before its workers fork,
no cgroup limits) is forked from the fork server instead of started as a fresh process: it
shares the libraries' memory with every other model and skips their imports (see the serving
module's docstring for why). The fork server is started by the publisher (root in multi-user
mode; each child becomes its owner's account before it looks at the bundle), in its own session,
and recorded in ``<data>/forkserver/forkserver.json`` so a publisher killed with SIGKILL stops
its predecessor's at the next start. Stopping it leaves the models it forked running: they are
in sessions of their own, like every serving process, and a restarted publisher adopts them.

Until the fork server answers (its imports take a few seconds after the publisher starts), or
if it is gone, starts fall back to a fresh process: nothing waits for it. One that died is
started again at the next start that would have used it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlhub.deployers.processes import running_in, start_detached, write_json_atomic
from mlhub.errors import DeployError
from mlhub.serving.forkserver import exit_record
from mlhub.serving.launch import loads_per_worker

SOCKET = "forkserver.sock"
_TIMEOUT = 30  # seconds a fork may take (it waits for the child's demotion and chdir)


class ForkedProcess:
    """A uWSGI master the fork server forked: ``subprocess.Popen``'s ``pid``, ``poll()`` and
    ``returncode`` for a process that is the fork server's child, not the publisher's."""

    def __init__(self, pid, cwd, socket_path):
        self.pid, self.cwd, self.socket_path = pid, os.path.realpath(cwd), socket_path
        self.returncode = None

    def poll(self):
        if self.returncode is None and not running_in(self.pid, self.cwd):
            self.returncode = self._exit_code()
        return self.returncode

    def _exit_code(self):
        """The status the fork server recorded (it reaps on SIGCHLD, so it is there within
        milliseconds of the end); -1 if it never is (the fork server itself is gone)."""
        record = exit_record(self.socket_path, self.pid)
        for _ in range(20):
            try:
                code = int(record.read_text())
            except (OSError, ValueError):
                time.sleep(0.025)
                continue
            record.unlink(missing_ok=True)  # read once: the folder does not grow
            return code
        return -1


class ForkServerClient:
    """The fork server of one ``LocalDeployer`` (which owns the settings); ``base_env()`` is
    the environment a serving process starts with (``Launcher.base_env``)."""

    def __init__(self, deployer, base_env):
        self.deployer = deployer
        self.base_env = base_env
        self.dir = Path(deployer.data_dir, "forkserver")
        self.socket = self.dir / SOCKET
        self.proc = None

    def fits(self, runtime, manifest):
        """Whether a start of this model can be forked (else it is a fresh process)."""
        return self.deployer.fork_server and runtime == "python" and not loads_per_worker(manifest)

    def start(self):
        """Start the fork server (non-blocking), after stopping a killed predecessor's."""
        self.stop()
        if not self.deployer.fork_server:
            return
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "mlhub.serving", "forkserver", "--socket", str(self.socket)]
        env = {**self.base_env(), "MLHUB_PRELOAD": ",".join(self.deployer.fork_server_imports)}
        with open(self.dir / "forkserver.log", "ab") as log:
            self.proc = start_detached(cmd, env=env, cwd=self.dir, log=log)
        write_json_atomic(self.dir / "forkserver.json", {"pid": self.proc.pid})

    def fork(self, bundle, port, workers, host, env, log_path, account=None, nice=0):
        """A uWSGI master serving ``bundle``, forked as ``account`` (None: the publisher's),
        logging to ``log_path``: a ``ForkedProcess``, or None when the fork server is not
        running or not ready yet (the caller starts a fresh process). Raises ``DeployError``
        when the child failed before it ran uWSGI (the model's log has its traceback)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:  # it died (the OOM killer?): one for the next starts
            self.deployer.log.warning(
                "the fork server exited with code %s; starting another", self.proc.returncode
            )
            self.start()
            return None
        request = {
            "bundle": str(bundle),
            "port": port,
            "workers": workers,
            "host": host,
            "env": env,
            "log": str(log_path),
            "account": account.to_dict() if account is not None else None,
            "nice": nice,
        }
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(_TIMEOUT)
                conn.connect(str(self.socket))
                with conn.makefile("rwb") as stream:
                    stream.write(json.dumps(request).encode() + b"\n")
                    stream.flush()
                    reply = json.loads(stream.readline() or b"{}")
        except (FileNotFoundError, ConnectionRefusedError):
            return None  # not listening yet
        if "pid" not in reply:
            why = reply.get("error") or "it did not answer"
            raise DeployError(f"the fork server could not start the model: {why}")
        return ForkedProcess(reply["pid"], bundle, self.socket)

    def stop(self):
        """Stop the fork server (ours, or the one a killed predecessor recorded); the models it
        forked run on."""
        pids = {self.proc.pid} if self.proc is not None else set()
        try:
            pids.add(json.loads((self.dir / "forkserver.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            pass
        for pid in pids:
            if running_in(pid, os.path.realpath(self.dir)):  # not a recycled pid
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
