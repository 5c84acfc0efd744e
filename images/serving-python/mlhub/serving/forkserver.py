"""The fork server: one process that imported the serving runtime and the libraries models
usually need, and forks every Python model's uWSGI master from itself (the local deployer's;
``python -m mlhub.serving forkserver --socket PATH``).

Why: memory and start time. A uWSGI master started on its own imports numpy, scipy, pandas,
scikit-learn and Flask again (about 100 MB of proportional set size per model, and 1 s of an idle
2-core machine, 3-5 s of a busy one). A master forked from here shares those pages, copy-on-write,
with this process and with every other model's processes: an awake model costs what it writes
(its model, its own objects), and its start, a sleeping model's wake included, skips the imports.
``gc.freeze()`` after the imports keeps the garbage collector from writing to the shared pages.
uWSGI runs in the forked child through pyuwsgi (uWSGI as a Python module: ``pyuwsgi.run``
with ``uwsgi_argv``'s options), so the child keeps what the parent imported.

Protocol: a client (the deployer, root in multi-user mode; the socket is 0600) sends one JSON line
``{"bundle", "port", "host", "workers", "env", "log", "account", "nice"}`` and reads one JSON line,
``{"pid": N}`` once the child runs as its account in the bundle directory, or ``{"error": why}``.
The child, in order: a session of its own, its log on stdout and stderr (opened while it is
still root: only the publisher may read a model's log), ``nice``, the owner's account (before it
looks at the bundle, so the model is only ever unpickled as its owner), the bundle directory,
the model's environment, uWSGI. The server reaps its children and writes each one's exit status
to ``exits/<pid>`` beside the socket, which is how the deployer says how a model ended.
"""

import argparse
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from pathlib import Path

from mlhub.sysusers import SystemAccount, demote

from .launch import process_env, uwsgi_argv

_RUNTIME = ("pyuwsgi", "mlhub.serving.app", "mlhub.serving.model", "mlhub.serving.auth")
_READY = b"1"  # what a child writes once it is its account, in its bundle directory


def preload(names):
    """Import the serving runtime and ``names`` (a missing one is skipped, saying so). Nothing
    here configures ``logging``: the children's app does (wsgi.py)."""
    for name in (*_RUNTIME, *names):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"mlhub.serving forkserver: cannot import {name}: {exc}", flush=True)


def exits_dir(socket_path):
    """Where the fork server listening on ``socket_path`` records its children's exit statuses
    (read by the deployer: ``mlhub.deployers.forkserver.ForkedProcess``)."""
    return Path(socket_path).parent / "exits"


def exit_record(socket_path, pid):
    return exits_dir(socket_path) / str(pid)


def _child(request, ready_fd):
    """In the forked child: become the model's process as the module docstring says, then run
    uWSGI; never returns."""
    try:
        os.setsid()
        fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for std in (1, 2):
            os.dup2(fd, std)
        os.close(fd)
        os.close(null)
        # nothing of the fork server's (its selector, a client's socket) reaches the model
        os.closerange(3, ready_fd)
        os.closerange(ready_fd + 1, os.sysconf("SC_OPEN_MAX"))
        if request.get("nice"):
            os.nice(int(request["nice"]))
        if request.get("account"):
            account = SystemAccount.from_dict(request["account"])
            demote(account.uid, account.gid, account.gids, umask=0o077)
        os.chdir(request["bundle"])
        argv = uwsgi_argv(
            request["bundle"],
            request["port"],
            workers=request["workers"],
            host=request["host"],
            env=request["env"],
            in_process=True,
        )
        os.environ.clear()
        os.environ.update(process_env(argv, request["env"]))
        print(f"--- mlhub: forked from the fork server as pid {os.getpid()}: {argv}", flush=True)
        os.write(ready_fd, _READY)
        os.close(ready_fd)
        import pyuwsgi  # imported by the fork server already (preload)

        pyuwsgi.run(argv[1:])
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(2)
    os._exit(0)


class ForkServer:
    """The accept loop: one request per connection, answered once the child is set up."""

    def __init__(self, path):
        self.path = Path(path)
        self.children = set()

    def reap(self, *_):
        """Collect every child that ended and record its exit status (SIGCHLD)."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            exit_record(self.path, pid).write_text(str(code))

    def fork(self, request, conn):
        """Fork a child for ``request``; its pid once it is set up, or raise ``OSError``.
        SIGCHLD waits meanwhile, so a child that ends at once is recorded after it is known."""
        read_fd, write_fd = os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                conn.close()
                self.listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                _child(request, write_fd)
            os.close(write_fd)
            exit_record(self.path, pid).unlink(missing_ok=True)
            self.children.add(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        with os.fdopen(read_fd, "rb") as pipe:
            ok = pipe.read(1) == _READY
        if not ok:
            raise OSError(f"the forked process {pid} failed before it ran uWSGI (see its log)")
        return pid

    def answer(self, conn):
        with conn, conn.makefile("rwb") as stream:
            try:
                reply = {"pid": self.fork(json.loads(stream.readline()), conn)}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                reply = {"error": str(exc)}
            stream.write(json.dumps(reply).encode() + b"\n")

    def serve(self):
        exits_dir(self.path).mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.listener.bind(str(self.path))
        finally:
            os.umask(old)
        self.listener.listen(16)
        signal.signal(signal.SIGCHLD, self.reap)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"mlhub.serving forkserver: ready on {self.path}", flush=True)
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            while True:
                if selector.select(timeout=5):
                    conn, _ = self.listener.accept()
                    self.answer(conn)
                self.reap()


def main(argv):
    parser = argparse.ArgumentParser(
        prog="python -m mlhub.serving forkserver",
        description="Import the serving runtime once and fork Python models' uWSGI masters "
        "from this process on request (the local deployer's fork server).",
    )
    parser.add_argument("--socket", required=True, help="unix socket to listen on (made 0600)")
    args = parser.parse_args(argv)
    preload(filter(None, os.environ.get("MLHUB_PRELOAD", "").split(",")))
    gc.freeze()
    ForkServer(args.socket).serve()
