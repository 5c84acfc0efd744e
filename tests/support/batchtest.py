"""Real processes for the serving and batch tests: a model server, PostgreSQL and Redis.

``Serving`` starts ``python -m mlhub.serving`` (uWSGI) on a free port, ``Postgres`` a
throwaway PostgreSQL cluster from Debian's ``postgresql`` package (initdb in a temporary
folder, as the ``postgres`` user when the tests run as root, since PostgreSQL refuses root),
``Redis`` a ``redis-server`` with persistence off. Each has ``stop()``; the fixtures stop them
at module end, so nothing is left running.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from support.embedded_hub import free_port, wait_for


def _stop(proc, seconds=30):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Serving:
    """One model server, started as the local deployer starts it; ``url`` is its base."""

    def __init__(self, bundle, log_dir, *, env=None, workers=2, prefix=None, wait_path="readyz"):
        """``env`` defaults to authentication off; ``wait_path`` is the route that must answer
        200 before the server counts as started (``healthz`` for a bundle that cannot load)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = Path(log_dir) / f"serving-{self.port}.log"
        argv = [sys.executable, "-m", "mlhub.serving", "--bundle", str(bundle)]
        argv += ["--port", str(self.port), "--workers", str(workers)]
        if prefix:
            argv += ["--prefix", prefix]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLHUB_")}
        full_env.update({"MLHUB_AUTH": "off"} if env is None else env)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=log)
        self.wait_path = wait_path
        try:
            wait_for(self._started, f"the model server on {self.url} (log {self.log})", 60)
        except BaseException:
            self.stop()
            raise

    def _started(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"the model server exited: {self.log.read_text()[-3000:]}")
        return requests.get(self.url + self.wait_path, timeout=2).status_code == 200

    def predicted_rows(self):
        """``mlhub_predictions_total``: rows the server predicted, all workers together."""
        text = requests.get(self.url + "metrics", timeout=5).text
        return int(float(re.search(r"^mlhub_predictions_total (\S+)$", text, re.M).group(1)))

    def stop(self):
        _stop(self.proc)


def _postgres_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise AssertionError("PostgreSQL is not installed: run scripts/system-deps")
    return found[-1]


class Postgres:
    """A PostgreSQL cluster on ``host``:<free port> (default 127.0.0.1); ``url`` for SQLAlchemy.

    Without ``password``, trust auth. With one, clients on TCP must give it (scram-sha-256),
    and clients of the machine's own networks (the docker bridge: pods) may connect too.
    """

    def __init__(self, host="127.0.0.1", password=None):
        self.dir = Path(tempfile.mkdtemp(prefix="mlhub-pg-"))
        user = {}
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.dir, "postgres", "postgres")
            user = {"user": "postgres", "group": "postgres"}
        data = self.dir / "data"
        auth = ["--auth=trust"]
        if password:
            pwfile = self.dir / "pwfile"
            pwfile.write_text(password + "\n")
            if user:
                shutil.chown(pwfile, "postgres", "postgres")
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        subprocess.run(
            [_postgres_bin("initdb"), "-D", str(data), "-U", "postgres", *auth]
            + ["--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
            **user,
        )
        if password:
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet scram-sha-256\n")
        self.host, self.port = host, free_port()
        self.log = self.dir / "postgres.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [_postgres_bin("postgres"), "-D", str(data), "-p", str(self.port)]
                + ["-k", str(self.dir), "-c", f"listen_addresses={host}", "-c", "fsync=off"],
                stdout=log,
                stderr=log,
                **user,
            )
        self.url = f"postgresql://postgres@{host}:{self.port}/postgres"
        try:
            wait_for(self._ready, f"PostgreSQL on port {self.port} (log {self.log})", 60)
        except BaseException:
            self.stop()
            raise

    def psql(self, sql):
        """``sql``'s rows, through the local socket (trust), as ``|``-separated lines."""
        out = subprocess.run(
            [_postgres_bin("psql"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres"]
            + ["-d", "postgres", "-At", "-c", sql],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.splitlines()

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"PostgreSQL exited: {self.log.read_text()[-3000:]}")
        ready = subprocess.run(
            [_postgres_bin("pg_isready"), "-h", self.host, "-p", str(self.port)],
            capture_output=True,
        )
        return ready.returncode == 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: ends open sessions
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A redis-server on 127.0.0.1:<free port> with no persistence; ``url`` for redis-py."""

    def __init__(self):
        server = shutil.which("redis-server")
        if not server:
            raise AssertionError("redis-server is not installed: run scripts/system-deps")
        self.dir = Path(tempfile.mkdtemp(prefix="mlhub-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(self._ready, f"redis-server on port {self.port}", 30)
        except BaseException:
            self.stop()
            raise

    def _ready(self):
        import redis

        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited")
        try:
            with redis.Redis.from_url(self.url) as client:
                return client.ping()
        except redis.ConnectionError:
            return False

    def stop(self):
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)
