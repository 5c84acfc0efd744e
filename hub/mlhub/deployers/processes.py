"""The local deployer's view of its serving processes: what one instance is (``ServingInstance``,
recorded in run-state files so a restarted publisher finds it again), whether it still runs,
which processes are left of it, and the small file helpers its state and logs need.

Processes are found through ``/proc``: an instance's group is the processes of its master's
process group that work in its bundle directory, so a recycled pid never gets a signal meant
for a model.
"""

import json
import os
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path


def _stat(pid):
    """(state, process group) of a process from /proc, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def _cwd(pid):
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _group(pgid, cwd):
    """Live processes of process group ``pgid`` working in ``cwd``: a serving instance's master,
    workers and gateway (they run in the bundle directory). Matching the directory as well as
    the group means a recycled pid never gets one of our signals."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat and stat[1] == pgid and stat[0] != "Z" and _cwd(entry.name) == cwd:
                found.append(int(entry.name))
    return found


def running_in(pid, cwd):
    """Whether ``pid`` is a live process (not a zombie) working in ``cwd`` (a real path): how a
    process not our child is known to be ours still (pids get recycled)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and _cwd(pid) == cwd


@dataclass
class ServingInstance:
    """One uWSGI master serving one version on one port."""

    version: str
    bundle_dir: str
    port: int
    pid: int
    workers: int
    started: float
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    cgroup: str | None = None  # its cgroup (mlhub.limits) when the model has limits
    uid: int | None = None  # the account it runs as (None: the publisher's)
    # how it was started (deployers.base.Serving); not recorded: an adopted instance has None
    serving: object = field(default=None, repr=False, compare=False)

    def alive(self):
        """Whether the master still runs: ``Popen.poll`` for our children; for adopted ones,
        a live process with that pid working in the bundle directory (pids get recycled)."""
        if self.proc is not None:
            return self.proc.poll() is None
        return running_in(self.pid, self.cwd)

    @property
    def cwd(self):
        return os.path.realpath(self.bundle_dir)

    def leftovers(self):
        """Processes of this instance still running (its group started in the bundle dir)."""
        return _group(self.pid, self.cwd)

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.returncode

    def to_dict(self):
        return {k: getattr(self, k) for k in _RECORDED}

    @classmethod
    def from_dict(cls, data):
        return cls(**{k: data[k] for k in _RECORDED if k in data})


_RECORDED = ("version", "bundle_dir", "port", "pid", "workers", "started", "cgroup", "uid")


def tail_lines(path, n, keep=None):
    """The last ``n`` lines of a text file ('' if it does not exist); with ``keep``, of the
    lines ``keep(line)`` accepts."""
    try:
        with open(path, errors="replace") as fh:
            return "".join(deque(fh if keep is None else filter(keep, fh), maxlen=n))
    except FileNotFoundError:
        return ""


def write_json_atomic(path, data, before_replace=None):
    """Write ``data`` to ``path`` as JSON, all at once for readers (a rename); ``before_replace``
    (the temporary file's path) sets its owner and mode before it takes the name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    if before_replace is not None:
        before_replace(tmp)
    os.replace(tmp, path)


def start_detached(cmd, *, env, cwd, log, preexec_fn=None):
    """Start ``cmd`` in its own session, so it outlives the publisher and gets no terminal
    signals, with its output appended to the open file ``log``: how every serving process not
    forked by the fork server, and the fork server itself, starts."""
    return subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
