"""How the local deployer starts, checks and stops one serving instance.

``Launcher`` is the process side of ``LocalDeployer`` (which owns the settings and decides
*when*): it builds a serving process's environment (the publisher's without its secrets, plus
the model's identity and serving options) and command (``serve_commands`` per runtime, refused
with an install hint when its program is missing), starts it (forked from the fork server when
the start fits, else a fresh process in its own session, held to the model's limits by
``mlhub.limits`` and run as the owner's account), waits until it answers ``/readyz`` with its
own version (or says why its model does not load), explains how it ended (the kernel's OOM
kills included), and stops it with all it left behind.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from mlhub import rlang
from mlhub.bundle import load_manifest
from mlhub.deployers import serving_log
from mlhub.deployers.base import load_failure
from mlhub.deployers.forkserver import ForkServerClient
from mlhub.deployers.processes import ServingInstance, start_detached, tail_lines
from mlhub.errors import DeployError, InvalidBundle
from mlhub.limits import cgroups_for, hold, replica_limits
from mlhub.serving.frontend import free_port
from mlhub.steps import SHADOW

# environment a model process must not inherit: it runs the owner's (untrusted) code
_SECRET_PREFIXES = ("JUPYTERHUB_", "CONFIGPROXY_", "MLHUB_")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD")
_POLL = 0.2  # seconds between checks while waiting for a process to exit
# readiness is polled every _READY_POLL[0] s at first, growing by half each time up to [1]:
# a small model answers /readyz within a second, a big one may take minutes
_READY_POLL = (0.02, 0.5)
OWNER_UMASK = 0o077  # what a model's processes create is their owner's alone
# what to tell the publisher of a model whose runtime's program is not installed here
_INSTALL_HINTS = {"r": rlang.INSTALL_HINT}
# a program every command of a runtime runs, besides the command's own first word
_RUNTIME_PROGRAMS = {"r": rlang.RSCRIPT}


class Launcher:
    """Start, wait for, explain and stop the serving processes of one ``LocalDeployer``
    (``settings``: its traits and paths)."""

    def __init__(self, settings):
        self.settings = settings
        self.fork_server = ForkServerClient(settings, self.base_env)
        self._cgroup_tree = None  # detected at the first limited start (False: none usable)

    # ------------------------------------------------------------ environment and command

    def base_env(self):
        """The publisher's environment without its secrets, plus ``extra_env``."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_SECRET_PREFIXES) and not any(w in k for w in _SECRET_WORDS)
        }
        if self.settings.python_path:
            env["PYTHONPATH"] = os.pathsep.join(
                [*self.settings.python_path, *filter(None, [env.get("PYTHONPATH")])]
            )
        env.update(self.settings.extra_env)
        return env

    def env(self, model, version, serving, account=None):
        """The environment of a serving process of ``model`` at ``version``."""
        env = self.base_env()
        if account is not None:
            env.update(account.env())
        env.update(
            {
                "MLHUB_URL_PREFIX": model.model_prefix,
                "MLHUB_MODEL_OWNER": model.owner,
                "MLHUB_MODEL_NAME": model.name,
                "MLHUB_MODEL_VERSION": version,
                "MLHUB_ACCESS_FILE": str(self.settings.access_file(model)),
                "MLHUB_AUTH": "on",
                "JUPYTERHUB_API_URL": self.settings.hub_api_url,
                **serving.env(),
            }
        )
        log_env = self.settings.inference_log_env(model, serving)
        if log_env and self.settings.log_token is not None:
            # the model's log token: it sends the model's inference log, nothing else
            env.update(log_env, MLHUB_INFERENCE_LOG_TOKEN=self.settings.log_token(model))
        return env

    def command(self, table, runtime, **values):
        """``table[runtime]`` with its placeholders filled; refused when this machine cannot
        run it (no command for the runtime, or its program is not installed)."""
        if runtime not in table:
            raise InvalidBundle(
                f"runtime {runtime!r} cannot be served here (this deployer serves "
                f"{', '.join(sorted(table)) or 'nothing'}); see LocalDeployer.serve_commands",
                {"field": "runtime"},
            )
        cmd = [str(part).format(**values) for part in table[runtime]]
        for program in filter(None, (cmd[0], _RUNTIME_PROGRAMS.get(runtime))):
            if shutil.which(program) is None:
                hint = _INSTALL_HINTS.get(
                    runtime, "install it or change LocalDeployer.serve_commands"
                )
                raise InvalidBundle(
                    f"runtime {runtime!r} cannot be served here: {program} is not installed; "
                    f"{hint}",
                    {"field": "runtime", "runtime": runtime, "missing": program},
                )
        return cmd

    async def check(self, manifest, bundle_dir, account=None):
        """Run the runtime's check command (if any) on ``bundle_dir``, as ``account``."""
        s = self.settings
        if manifest["runtime"] not in s.check_commands:
            return  # the serving process's readiness is the check (prepare)
        cmd = self.command(s.check_commands, manifest["runtime"], bundle=bundle_dir)
        env = self.base_env()
        if account is not None:
            env.update(account.env())
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=bundle_dir,
            start_new_session=True,
            preexec_fn=account.preexec(umask=OWNER_UMASK) if account is not None else None,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), s.check_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise InvalidBundle(
                f"loading the model took longer than {s.check_timeout:g} s "
                "(LocalDeployer.check_timeout)",
                {"field": "model_file"},
            ) from None
        if proc.returncode != 0:
            text = out.decode(errors="replace").replace(str(bundle_dir), "the bundle")
            lines = [ln for ln in text.splitlines() if ln.strip()]
            reason = lines[-1] if lines else f"exit code {proc.returncode}"
            raise InvalidBundle(
                f"the new version cannot serve: {reason}",
                {"field": "model_file", "output": lines[-20:]},
            )

    # ------------------------------------------------------------ start

    def spawn(self, model, version, bundle_dir, workers, account, serving):
        """Start an instance of ``version`` with ``workers`` replicas (forked from the fork
        server if the start fits) and return it at once; ``wait_ready`` tells when it serves."""
        s = self.settings
        manifest = load_manifest(bundle_dir)
        s.check_replicas(manifest, workers)
        env = self.env(model, version, serving, account)
        uid = account.uid if account else None
        limits = replica_limits(serving.resources)
        limited = any(vars(limits).values()) and s.limit_method != "none"
        log_path = s.log_file(model)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        nice = s.shadow_nice if model.alias == SHADOW else 0
        port = free_port(s.host)
        proc, cgroup = None, None
        if not limited and self.fork_server.fits(manifest["runtime"], manifest):
            # None while the fork server is not listening: a fresh process then (its log line
            # says which it was: the fork server's child writes its own)
            proc = self.fork_server.fork(
                bundle_dir, port, workers, s.host, env, log_path, account, nice
            )
        if proc is None:
            cmd = self.command(
                s.serve_commands,
                manifest["runtime"],
                bundle=bundle_dir,
                port=port,
                workers=workers,
                host=s.host,
            )
            held, preexec_fn = "", None
            if limited:
                name = f"{model.owner_dir}.{model.name}.{port}"
                cgroup, held, preexec_fn = hold(self._cgroups(), name, limits, workers)
            if nice:
                preexec_fn = _niced(nice, preexec_fn)
                held += f" at nice {nice}"
            if account is not None:
                preexec_fn = account.preexec(umask=OWNER_UMASK, before=preexec_fn)
                held += f" as {account.name}"
            with open(log_path, "ab") as log:
                log.write(f"--- mlhub: starting {version} on port {port}{held}: {cmd}\n".encode())
                log.flush()
                try:
                    proc = start_detached(
                        cmd, env=env, cwd=bundle_dir, log=log, preexec_fn=preexec_fn
                    )
                except BaseException:
                    if cgroup:
                        self._cgroups().remove(cgroup)
                    raise
        return ServingInstance(
            version,
            str(bundle_dir),
            port,
            proc.pid,
            workers,
            time.time(),
            proc,
            cgroup,
            uid,
            serving=serving,
        )

    def _cgroups(self):
        """The cgroup tree serving instances get their groups in (detected once), or None."""
        if self._cgroup_tree is None:
            found = cgroups_for(
                self.settings.limit_method,
                "LocalDeployer.limit_method",
                DeployError,
                name="mlhub-models",
                parent=self.settings.cgroup_parent or None,
            )
            self._cgroup_tree = found or False  # False: looked, none usable
        return self._cgroup_tree or None

    # ------------------------------------------------------------ readiness

    async def probe(self, inst, model):
        """``(ready, reason)``: whether ``inst`` answers ``/readyz`` (and, if it says, with its
        own version); ``reason`` is why its model is not ready when it answers 503 saying so."""
        url = f"http://{self.settings.host}:{inst.port}{model.model_prefix}/readyz"
        try:
            resp = await AsyncHTTPClient().fetch(url, request_timeout=5)
        except HTTPClientError as exc:
            return False, load_failure(exc)
        except OSError:
            return False, None
        try:
            reported = json.loads(resp.body).get("version")
        except (ValueError, AttributeError):
            reported = None
        return reported in (None, inst.version), None

    async def wait_ready(self, model, inst):
        """Return when ``inst`` is ready. Raise ``InvalidBundle`` when it answers that its model
        is not ready (the model does not load), ``DeployError`` when it exits or times out."""
        timeout = self.settings.ready_timeout
        deadline = time.monotonic() + timeout
        pause = _READY_POLL[0]
        while time.monotonic() < deadline:
            if not inst.alive():
                raise self.failure(model, f"{self.exit_reason(inst)} before it was ready")
            ready, reason = await self.probe(inst, model)
            if ready:
                return
            if reason:
                if limit := _memory_limit(inst):
                    reason += f" (the model's memory_limit is {limit} per replica)"
                raise InvalidBundle(
                    f"the new version cannot serve: {reason}",
                    {"field": "model_file", "log_tail": self.log_tail(model)},
                )
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, _READY_POLL[1])
        raise self.failure(
            model,
            f"the serving process (pid {inst.pid}) was not ready after {timeout:g} s "
            "(LocalDeployer.ready_timeout)",
        )

    # ------------------------------------------------------------ end

    def exit_reason(self, inst):
        """How ``inst`` ended, saying so when the kernel killed part of it for memory."""
        why = f"the serving process (pid {inst.pid}) exited with code {inst.returncode}"
        cgroups = self._cgroup_tree
        if inst.cgroup and cgroups and cgroups.oom_kills(inst.cgroup):
            why += (
                f" after the kernel killed it (or one of its processes) for using more memory "
                f"than the model's memory_limit ({_memory_limit(inst)} per replica); "
                "publish it with a higher memory_limit or make it need less"
            )
        return why

    def log_tail(self, model):
        lines = self.settings.log_tail_lines
        return tail_lines(self.settings.log_file(model), lines, keep=serving_log.shown).rstrip()

    def failure(self, model, what):
        """A ``DeployError`` saying ``what`` with the last lines of the model's log."""
        tail = self.log_tail(model)
        return DeployError(f"{what}; last lines of its log:\n{tail}", {"log_tail": tail})

    async def stop(self, inst):
        """SIGTERM the master, wait ``stop_timeout``, then kill whatever is left of it
        (a master killed with SIGKILL can leave its workers behind)."""
        if inst.alive():
            try:
                os.kill(inst.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + self.settings.stop_timeout
            while inst.alive() and time.monotonic() < deadline:
                await asyncio.sleep(_POLL / 2)
        for pid in inst.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if inst.proc is not None:
            inst.proc.poll()
        if inst.cgroup and (cgroups := self._cgroups()) is not None:
            await asyncio.to_thread(cgroups.remove, inst.cgroup)


def _memory_limit(inst):
    """The per-replica memory limit ``inst`` was started with, if any."""
    resources = inst.serving.resources if inst.serving is not None else None
    return ((resources or {}).get("limits") or {}).get("memory")


def _niced(increment, then=None):
    """A ``preexec_fn`` that lowers the process's CPU priority by ``increment``, then runs
    ``then`` (if any)."""

    def preexec():
        os.nice(increment)
        if then is not None:
            then()

    return preexec
