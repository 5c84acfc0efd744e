"""Memory and CPU limits for local user servers and serving instances, as far as the OS allows.

Preferred: one cgroup per server (the v2 unified hierarchy, else the v1 ``memory`` and ``cpu``
controllers), which limits the server and all its kernels together. Memory beyond the limit
OOM-kills inside that group only; CPU beyond the limit is throttled (a CFS quota), never killed.
``RLIMIT_CPU`` is deliberately not used: it kills a process after N CPU-seconds, which is wrong
for a notebook that lives for days.

Without a writable cgroup hierarchy (not root, no delegation, a container without cgroupns
write access) memory falls back to ``RLIMIT_DATA`` on each process (heap and anonymous memory,
not shared libraries or merely reserved address space, so it is per process, not per server)
and CPU is not enforced. ``MEM_LIMIT``/``CPU_LIMIT`` are advertised in the environment either
way, as JupyterHub does, so tools in the notebook can show them.
"""

import logging
import os
import resource
import signal
import time
from dataclasses import dataclass

from mlhub.resources import quantity

CGROUP_ROOT = "/sys/fs/cgroup"
CFS_PERIOD_US = 100_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Bytes and CPUs for one server; None means no limit."""

    mem_limit: int | None = None
    mem_guarantee: int | None = None
    cpu_limit: float | None = None
    cpu_guarantee: float | None = None


def v2_values(limits):
    """cgroup v2 interface files for ``limits`` (memory.max/low, cpu.max/weight)."""
    values = {}
    if limits.mem_limit:
        values["memory.max"] = str(limits.mem_limit)
    if limits.mem_guarantee:
        values["memory.low"] = str(limits.mem_guarantee)
    if limits.cpu_limit:
        values["cpu.max"] = f"{max(1000, round(limits.cpu_limit * CFS_PERIOD_US))} {CFS_PERIOD_US}"
    if limits.cpu_guarantee:
        # weight 100 is one "normal" process; scale so 1 guaranteed CPU weighs 100
        values["cpu.weight"] = str(min(10000, max(1, round(limits.cpu_guarantee * 100))))
    return values


def v1_values(limits):
    """cgroup v1 interface files for ``limits``, per controller."""
    memory, cpu = {}, {}
    if limits.mem_limit:
        memory["memory.limit_in_bytes"] = str(limits.mem_limit)
    if limits.mem_guarantee:
        memory["memory.soft_limit_in_bytes"] = str(limits.mem_guarantee)
    if limits.cpu_limit:
        cpu["cpu.cfs_period_us"] = str(CFS_PERIOD_US)
        cpu["cpu.cfs_quota_us"] = str(max(1000, round(limits.cpu_limit * CFS_PERIOD_US)))
    if limits.cpu_guarantee:
        cpu["cpu.shares"] = str(max(2, round(limits.cpu_guarantee * 1024)))
    return {"memory": memory, "cpu": cpu}


def _own_cgroups(proc_file="/proc/self/cgroup"):
    """{controller: path} of this process; the v2 entry has controller ""."""
    paths = {}
    with open(proc_file) as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


class Cgroups:
    """Where this hub creates one cgroup per server: ``<base>/<server>`` for each controller.

    ``bases`` maps a controller to its base directory: ``{"": dir}`` for v2, ``{"memory": dir,
    "cpu": dir}`` (either may be missing) for v1.
    """

    def __init__(self, version, bases):
        self.version = version
        self.bases = bases

    def __repr__(self):
        return f"<Cgroups v{self.version} {self.bases}>"

    @classmethod
    def detect(cls, name="mlhub", parent=None, root=CGROUP_ROOT):
        """The usable hierarchy, or None. ``parent``: a delegated v2 directory to use instead
        of the sibling ``<parent of the hub's own cgroup>/<name>``."""
        try:
            if os.path.exists(os.path.join(root, "cgroup.controllers")):
                return cls._detect_v2(name, parent, root)
            return cls._detect_v1(name, root)
        except OSError as e:
            log.info("cgroups not usable for server limits (%s)", e)
            return None

    @classmethod
    def _detect_v2(cls, name, parent, root):
        if parent is None:
            own = _own_cgroups().get("", "/")
            parent = os.path.join(root, os.path.dirname(own).lstrip("/"))
        base = os.path.join(parent, name)
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, "cgroup.controllers")) as f:
            available = set(f.read().split()) & {"memory", "cpu"}
        if "memory" not in available:
            log.info("cgroup v2 at %s has no memory controller; not using cgroups", base)
            os.rmdir(base)
            return None
        _write(os.path.join(base, "cgroup.subtree_control"), " ".join(f"+{c}" for c in available))
        return cls(2, {"": base})

    @classmethod
    def _detect_v1(cls, name, root):
        own = _own_cgroups()
        bases = {}
        for controller, probe in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us")):
            mount = os.path.join(root, controller)
            if controller not in own or not os.path.isdir(mount):
                continue
            base = os.path.join(mount, own[controller].lstrip("/"), name)
            try:
                os.makedirs(base, exist_ok=True)
                if os.path.exists(os.path.join(base, probe)) and os.access(base, os.W_OK):
                    bases[controller] = base
            except OSError as e:
                log.info("cgroup v1 %s not usable (%s)", controller, e)
        return cls(1, bases) if "memory" in bases else None

    def _dirs(self, server):
        return {controller: os.path.join(base, server) for controller, base in self.bases.items()}

    def create(self, server, limits):
        """Create (or reset) the server's groups with ``limits``; return the ``cgroup.procs``
        files the server process must write its pid to (see ``join``)."""
        self.remove(server)
        values = v2_values(limits) if self.version == 2 else v1_values(limits)
        procs = []
        for controller, path in self._dirs(server).items():
            os.makedirs(path, exist_ok=True)
            files = values if self.version == 2 else values[controller]
            for filename, value in files.items():
                _write(os.path.join(path, filename), value)
            procs.append(os.path.join(path, "cgroup.procs"))
        return procs

    def remove(self, server, grace=5.0):
        """Kill what is left in the server's groups (orphaned kernels), then remove them."""
        for path in self._dirs(server).values():
            if not os.path.isdir(path):
                continue
            deadline = time.monotonic() + grace
            while pids := self.pids(path):
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if time.monotonic() > deadline:
                    log.warning("processes %s in %s did not die", pids, path)
                    break
                time.sleep(0.05)
            try:
                os.rmdir(path)
            except OSError as e:
                log.warning("could not remove cgroup %s: %s", path, e)

    def oom_kills(self, server):
        """How many of the server's processes the kernel killed for going over its memory limit
        (``oom_kill`` of v2 ``memory.events`` or v1 ``memory.oom_control``; 0 if unknown)."""
        controller, events = (
            ("", "memory.events") if self.version == 2 else ("memory", "memory.oom_control")
        )
        path = self._dirs(server).get(controller)
        try:
            with open(os.path.join(path, events)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, TypeError, ValueError):
            pass
        return 0

    @staticmethod
    def pids(path):
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                return [int(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []


def preexec(procs_files, rlimit_data=None):
    """Code for ``Popen(preexec_fn=...)``: join the server's cgroups, or cap memory per process.

    It runs in the forked child before ``exec``, so it only writes files and sets a limit.
    """

    def apply():
        pid = str(os.getpid())
        for path in procs_files:
            _write(path, pid)
        if rlimit_data:
            resource.setrlimit(resource.RLIMIT_DATA, (rlimit_data, rlimit_data))

    return apply


def cgroups_for(method, setting, error, name="mlhub", parent=None):
    """The writable cgroup tree a ``limit_method`` holds processes in (``Cgroups.detect``), or
    None: for ``rlimit`` and ``none``, and for ``auto`` where none is writable. ``cgroup``
    without one raises ``error`` (the caller's typed error), naming the ``setting``."""
    if method not in ("auto", "cgroup"):
        return None
    cgroups = Cgroups.detect(name=name, parent=parent)
    if cgroups is None and method == "cgroup":
        raise error(
            f"{setting} is 'cgroup' but no writable cgroup hierarchy was found: run where "
            "cgroups may be created, or set it to 'auto' (RLIMIT_DATA where cgroups are not "
            "writable)"
        )
    return cgroups


def replica_limits(resources):
    """The local ``Limits`` of one replica from a model's publish ``resources`` (Kubernetes
    quantities, ``{"requests": ..., "limits": ...}``): the memory limit in bytes and the CPU
    limit in CPUs. Requests are left out: locally nothing reserves them."""
    limits = (resources or {}).get("limits") or {}
    memory, cpu = limits.get("memory"), limits.get("cpu")
    return Limits(
        mem_limit=int(quantity(memory)) if memory else None,
        cpu_limit=float(quantity(cpu)) if cpu else None,
    )


def instance_limits(limits, workers):
    """An instance serving ``workers`` replicas gets each replica's limits ``workers`` times."""
    return Limits(
        mem_limit=limits.mem_limit * workers if limits.mem_limit else None,
        cpu_limit=limits.cpu_limit * workers if limits.cpu_limit else None,
    )


def describe(limits):
    """``limits`` in words for a log line (``memory 536870912 bytes, 1.5 CPUs``)."""
    parts = []
    if limits.mem_limit:
        parts.append(f"memory {limits.mem_limit} bytes")
    if limits.cpu_limit:
        parts.append(f"{limits.cpu_limit:g} CPUs")
    return ", ".join(parts)


def hold(cgroups, name, limits, workers):
    """``(cgroup, description, preexec_fn)`` that hold a new serving instance of ``workers``
    replicas to per-replica ``limits``: its own cgroup ``name`` under ``cgroups`` (a
    ``Cgroups`` tree) with ``workers`` times them, else (no writable cgroups: ``cgroups`` is
    None) ``RLIMIT_DATA`` of one replica's memory per process; CPU is then not bounded."""
    if cgroups is not None:
        held = instance_limits(limits, workers)
        procs = cgroups.create(name, held)
        return name, f" in cgroup {name} ({describe(held)})", preexec(procs)
    if limits.mem_limit:
        return (
            None,
            f" with RLIMIT_DATA {limits.mem_limit} per process",
            preexec([], limits.mem_limit),
        )
    return None, " (cpu_limit not enforced: no writable cgroups)", None
