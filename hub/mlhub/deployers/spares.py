"""Pre-started Python serving processes, so a publish does not wait for imports.

Most of a small model's start is not the model: it is Python importing numpy, scikit-learn,
scipy, pandas and Flask (1 s on an idle 2-core machine, 3-5 s on a busy one). A spare is a uWSGI
master (``python -m mlhub.serving --spare FILE``) that has imported them and waits, with no
workers and no HTTP router yet, on its port. ``take`` hands one to a deploy: the deployer
writes the model's directory, environment and log into FILE, and the spare loads the bundle and
forks its workers there, exactly as a fresh process would from that point on (``wsgi.py``).
In multi-user mode a spare is started by the (root) publisher and becomes the model owner's
account (``mlhub.sysusers.demote``) as soon as it reads FILE, before it looks at the bundle: the
libraries it imported are the platform's, the model is only ever unpickled as its owner.

Only a start that a fresh process would make the same way takes a spare: the Python runtime,
``spare_workers`` workers, no micro-batching (it needs uWSGI threads) and no flavor loaded per
worker (``--lazy-apps``). Spares run in their own session like every serving process; they are
recorded in ``<data>/spare/spares.json``, so a publisher killed with SIGKILL stops its
predecessor's at the next start. A waiting spare has no children and nothing in flight, so it
is stopped with SIGKILL (uWSGI ignores SIGTERM while it loads an app).
"""

import json
import os
import signal
from pathlib import Path

from mlhub.deployers.processes import start_detached, write_json_atomic
from mlhub.serving.frontend import free_port
from mlhub.serving.launch import loads_per_worker

SPEC = "spare-{port}.json"


class SparePool:
    """The spare processes of one ``LocalDeployer`` (which owns the settings); ``base_env()``
    is the environment a serving process starts with (``Launcher.base_env``)."""

    def __init__(self, deployer, base_env):
        self.deployer = deployer
        self.base_env = base_env
        self.dir = Path(deployer.data_dir, "spare")
        self.spares = []  # {"pid", "port", "workers", "spec", "proc"}

    def _record(self):
        rows = [{k: v for k, v in s.items() if k != "proc"} for s in self.spares]
        write_json_atomic(self.dir / "spares.json", rows)

    def fits(self, runtime, workers, env, manifest):
        """Whether a spare can serve this start as a fresh process would."""
        return (
            runtime == "python"
            and workers == self.deployer.spare_workers
            and env.get("MLHUB_BATCHING", "off") == "off"
            and not loads_per_worker(manifest)
        )

    def fill(self):
        """Start spares until there are ``LocalDeployer.spares`` of them (non-blocking)."""
        d = self.deployer
        self.spares = [s for s in self.spares if s["proc"].poll() is None]
        while d.spare_command and len(self.spares) < d.spares:
            self.dir.mkdir(parents=True, exist_ok=True)
            port = free_port(d.host)
            spec = self.dir / SPEC.format(port=port)
            spec.unlink(missing_ok=True)
            values = {"spare": spec, "port": port, "workers": d.spare_workers, "host": d.host}
            cmd = [str(part).format(**values) for part in d.spare_command]
            env = {**self.base_env(), "MLHUB_SPARE_IMPORTS": ",".join(d.spare_imports)}
            with open(self.dir / f"spare-{port}.log", "ab") as log:
                proc = start_detached(cmd, env=env, cwd=self.dir, log=log)
            self.spares.append(
                {
                    "pid": proc.pid,
                    "port": port,
                    "workers": d.spare_workers,
                    "spec": str(spec),
                    "proc": proc,
                }
            )
            self._record()

    def take(self, bundle_dir, env, log_path, account=None):
        """A waiting spare, told to serve ``bundle_dir`` with ``env`` (logging to
        ``log_path``) as ``account`` (a ``SystemAccount``; None: stay the publisher's):
        ``(pid, port, Popen)``, or None when none is waiting."""
        while self.spares:
            spare = self.spares.pop(0)
            self._record()
            if spare["proc"].poll() is not None:
                continue
            spec = {"cwd": str(bundle_dir), "env": env, "log": str(log_path)}
            if account is not None:
                spec["account"] = account.to_dict()
            write_json_atomic(spare["spec"], spec)
            return spare["pid"], spare["port"], spare["proc"]
        return None

    def stop(self):
        """SIGKILL every spare, ours and any a killed predecessor recorded."""
        recorded = []
        try:
            recorded = json.loads((self.dir / "spares.json").read_text())
        except (OSError, ValueError):
            pass
        pids = {s["pid"] for s in self.spares} | {s["pid"] for s in recorded}
        for pid in pids:
            if _waiting_spare(pid, self.dir):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for spare in self.spares:
            spare["proc"].wait()
        self.spares = []
        self._record()


def _waiting_spare(pid, spare_dir):
    """Whether ``pid`` is still a spare waiting in ``spare_dir`` (not a recycled pid, nor a
    spare that was taken: that one runs in its bundle directory)."""
    try:
        return os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(spare_dir)
    except OSError:
        return False
