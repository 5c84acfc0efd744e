"""The embedded mode's spawner: local user servers that honour the spawner profiles.

``ProfileLocalSpawner`` is JupyterHub's ``LocalProcessSpawner`` plus what KubeSpawner's
``profile_list`` gives on Kubernetes: a profile and size picker on the spawn page, filtered by
the user's JupyterHub groups and checked again on the server side, and a server that gets the
profile's kernels, environment and resource limits. Each user works in their workspace
(``MlhubSettings.workspace``), both the notebook root and ``$HOME``, so it survives restarts.

In multi-user mode (``MlhubSettings.multi_user``) the server, and so every kernel and terminal,
runs as the user's own system account (``mlhub.sysusers``, made at the first spawn if
``mlhub users add`` has not made it), with LocalProcessSpawner's setuid/setgid, inside the
size's cgroup (joined while still root, so it cannot leave it). In single-user mode it runs as
the hub's own account, as JupyterHub's ``SimpleLocalProcessSpawner`` does.
"""

import asyncio
import os
import re
import sys
import time
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyter_client.kernelspec import KernelSpecManager
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Any, Enum, HasTraits, Unicode, default

from mlhub import rlang
from mlhub.errors import Conflict, MlhubError
from mlhub.limits import Cgroups, Limits, cgroups_for, preexec
from mlhub.profiles.loader import SIZE_OPTION, load_profiles, profiles_for, resolve_choice
from mlhub.settings import hub_settings, safe_name

TEMPLATES = Path(__file__).resolve().parent / "templates"
USER_UMASK = 0o022  # what a login gives; the hub itself runs with 077 (mlhub.datadir)


def http_error(error):
    """A tornado error JupyterHub shows as is on the spawn page (``jupyterhub_message``)."""
    e = web.HTTPError(error.status, error.message)
    e.jupyterhub_message = error.message
    return e


def installed_kernels():
    """Names of the kernels a user server started from this Python would find."""
    return set(KernelSpecManager().find_kernel_specs())


def gpu_count():
    """NVIDIA GPUs visible on this machine (``/dev/nvidia0``, ``/dev/nvidia1``, ...)."""
    try:
        return sum(1 for d in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", d))
    except OSError:
        return 0


class ProfileSource(HasTraits):
    """What both mlhub spawners (local and Kubernetes) need to apply the profile files: where
    they are, reading them with a clear HTTP error, and the user's groups they are checked
    against."""

    profiles_dir = Unicode(
        help="""Folder of the spawner profile files (``*.yaml``). They are re-read at every
        spawn page and start, so an edited profile applies without restarting the hub.
        Default: ``MlhubSettings.profiles_dir``.
        """,
    ).tag(config=True)

    @default("profiles_dir")
    def _default_profiles_dir(self):
        return hub_settings().profiles_dir

    def _user_groups(self):
        return [g.name for g in self.user.groups]

    def _load_profiles(self):
        try:
            return load_profiles(self.profiles_dir)
        except MlhubError as e:
            self.log.error("%s", e.message)
            raise http_error(e) from None


class ProfileLocalSpawner(ProfileSource, LocalProcessSpawner):
    """Local user servers with a profile picker (profile + size) and per-user workspaces, each
    run as its user's system account in multi-user mode."""

    home_dir = Unicode(
        help="The user's workspace: notebook root and $HOME (``MlhubSettings.workspace``)."
    )

    @default("home_dir")
    def _default_home_dir(self):
        return hub_settings().workspace(self.user.name)

    system_users = Any(
        help="""The system accounts servers run as (``mlhub.sysusers.SystemUsers``), or None to
        run them as the hub's own account. Default: ``MlhubSettings.system_users()``, i.e. per
        ``MlhubSettings.user_mode``."""
    )

    @default("system_users")
    def _default_system_users(self):
        return hub_settings().system_users()

    account = Any(None, help="The system account this server runs as (set at start), or None.")

    r_library = Unicode(
        help="""R library folder where the mlhub R helper (``mlhub::publish``) is installed for
        servers whose profile has the ``ir`` kernel; it is put first on their ``R_LIBS``. It is
        installed (``R CMD INSTALL``) at the first such spawn and again when the helper changes.
        Default: ``<MlhubSettings.data_dir>/R-library``. Empty: do not install it.
        """,
    ).tag(config=True)

    @default("r_library")
    def _default_r_library(self):
        return hub_settings().path("R-library")

    limit_method = Enum(
        ["auto", "cgroup", "rlimit", "none"],
        "auto",
        help="""How a size's memory and CPU limits are enforced (see ``mlhub.limits``):
        ``cgroup`` (one cgroup per server: memory and CPU for the server and its kernels
        together; start fails if cgroups are not writable), ``rlimit`` (memory only, per process,
        ``RLIMIT_DATA``), ``auto`` (cgroup if writable, else rlimit) or ``none`` (only advertise
        ``MEM_LIMIT``/``CPU_LIMIT``). Default ``auto``.
        """,
    ).tag(config=True)

    cgroup_parent = Unicode(
        "",
        help="""cgroup v2 only: a delegated directory to create the servers' cgroups under
        (its ``cgroup.subtree_control`` must offer memory and cpu), e.g.
        ``/sys/fs/cgroup/mlhub.slice``. Default "": next to the hub's own cgroup.
        """,
    ).tag(config=True)

    mlhub_publisher_url = Unicode(
        help="""Publisher URL given to user servers as ``MLHUB_PUBLISHER_URL``.
        Default: ``MlhubSettings.publisher_url`` (``<public_url>services/mlhub-publisher/``).
        """,
    ).tag(config=True)

    @default("mlhub_publisher_url")
    def _default_mlhub_publisher_url(self):
        return hub_settings().publisher_url

    profile = Any(None, help="The Profile this server runs (set from user_options at start).")
    size = Any(None, help="The Size this server runs (set from user_options at start).")

    # -- where the server runs -------------------------------------------------------------

    @default("notebook_dir")
    def _default_notebook_dir(self):
        return self.home_dir

    @default("cmd")
    def _default_cmd(self):
        # jupyterhub-singleuser, minus a 2 s import it never uses (see the module)
        return [sys.executable, "-m", "mlhub.extension.singleuser"]

    @default("default_url")
    def _default_default_url(self):
        return "/lab"

    @property
    def cgroup_name(self):
        return safe_name(self.user.name + (f"--{self.name}" if self.name else ""))

    # -- the form -------------------------------------------------------------------------

    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return self._apply_user_options

    @staticmethod
    def _unavailable(profile, size, kernels):
        """Why ``profile`` (with ``size``, if given) cannot run on this machine, or None."""
        if not any(k in kernels for k in profile.kernels):
            return f"Its kernels ({', '.join(profile.kernels)}) are not installed on this machine."
        if size is not None and size.gpu > gpu_count():
            return f"Needs {size.gpu} GPU(s); this machine has {gpu_count()}."
        return None

    def _render_options_form(self, spawner):
        """HTML of the picker: one card per allowed profile, a size list in each.
        (JupyterHub calls ``options_form(spawner)``; ``spawner`` is ``self``.)"""
        profiles = self._load_profiles()
        groups, admin = self._user_groups(), self.user.admin
        allowed = profiles_for(profiles, groups, admin)
        kernels = installed_kernels()
        usable = [p.slug for p in allowed if not self._unavailable(p, None, kernels)]
        defaults = [p.slug for p in allowed if p.default and p.slug in usable]
        previous = self.user_options.get("profile")
        chosen = previous if previous in usable else next(iter(defaults + usable), None)
        cards = []
        for p in allowed:
            size_slug = self.user_options.get(SIZE_OPTION) if p.slug == previous else None
            if p.get_size(size_slug or "") is None:
                size_slug = p.default_size.slug
            cards.append(
                {
                    "profile": p,
                    "checked": p.slug == chosen,
                    "unavailable": self._unavailable(p, None, kernels),
                    "kernels": [(k, k in kernels) for k in p.kernels],
                    "sizes": [
                        {
                            "size": s,
                            "selected": s.slug == size_slug,
                            "unavailable": s.gpu and self._unavailable(p, s, kernels),
                        }
                        for s in p.sizes
                    ],
                }
            )
        env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())
        return env.get_template("profile_form.html").render(
            cards=cards, hidden=len(profiles) - len(allowed), size_option=SIZE_OPTION
        )

    def _options_from_form(self, formdata):
        """Form fields -> ``{"profile": slug, "size": slug}``, checked right away so a refused
        choice is shown on the spawn page instead of failing later."""
        slug = formdata.get("profile", [""])[0]
        options = {"profile": slug} if slug else {}
        size = formdata.get(f"profile-option-{slug}--{SIZE_OPTION}", [""])[0]
        if size:
            options[SIZE_OPTION] = size
        self._resolve(options)
        return options

    def _resolve(self, user_options):
        """(Profile, Size) for ``user_options``, or an HTTP error the spawn page shows."""
        try:
            profile, size = resolve_choice(
                self._load_profiles(), user_options, self._user_groups(), self.user.admin
            )
            reason = self._unavailable(profile, size, installed_kernels())
            if reason:
                raise Conflict(f"The profile {profile.display_name!r} cannot start here: {reason}")
        except MlhubError as e:
            self.log.warning("Refused %s for %s: %s", user_options, self._log_name, e.message)
            raise http_error(e) from None
        return profile, size

    def _apply_user_options(self, spawner, user_options):
        """Set the profile, size and limits; runs for form and REST API spawns alike.
        (JupyterHub calls ``apply_user_options(spawner, options)``; ``spawner`` is ``self``.)"""
        self.profile, self.size = self._resolve(user_options)
        self.mem_limit = self.size.mem_limit
        self.mem_guarantee = self.size.mem_guarantee
        self.cpu_limit = self.size.cpu_limit
        self.cpu_guarantee = self.size.cpu_guarantee
        self.log.info("%s: profile %s, size %s", self._log_name, self.profile.slug, self.size.slug)

    # -- the process ----------------------------------------------------------------------

    def get_args(self):
        args = list(super().get_args())
        if os.geteuid() == 0 and self.account is None:
            args.append("--allow-root")  # single-user mode run as root
        if self.profile is not None:
            kernels = [k for k in self.profile.kernels if k in installed_kernels()]
            args.append(f"--KernelSpecManager.allowed_kernelspecs={kernels!r}")
            args.append(f"--MappingKernelManager.default_kernel_name={kernels[0]}")
        return args

    def get_env(self):
        env = super().get_env()
        if self.profile is not None:
            env.update(self.profile.environment)
            env["MLHUB_PROFILE"] = self.profile.slug
            env["MLHUB_SIZE"] = self.size.slug
            if self.size.gpu:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(self.size.gpu))
        if self._wants_r_helper():
            env["R_LIBS"] = os.pathsep.join(filter(None, [self.r_library, env.get("R_LIBS")]))
        env["MLHUB_PUBLISHER_URL"] = self.mlhub_publisher_url
        env["MLHUB_PUBLIC_URL"] = hub_settings().public_url
        return env

    def user_env(self, env):
        """``USER``, ``HOME`` (the workspace) and ``SHELL`` of the account the server runs as."""
        if self.account is not None:
            env.update(self.account.env())
        else:
            env.update(USER=self.user.name, SHELL="/bin/bash")
        env["HOME"] = self.home_dir
        return env

    def _cgroups(self):
        return cgroups_for(
            self.limit_method,
            "MlhubSpawner.limit_method",
            Conflict,
            parent=self.cgroup_parent or None,
        )

    def make_preexec_fn(self, name):
        limits = Limits(self.mem_limit, self.mem_guarantee, self.cpu_limit, self.cpu_guarantee)
        cgroups = self._cgroups() if any(vars(limits).values()) else None
        procs = cgroups.create(self.cgroup_name, limits) if cgroups else []
        rlimit = self.mem_limit if not cgroups and self.limit_method != "none" else None
        if cgroups:
            self.log.info("%s: limits %s in %s", self._log_name, limits, cgroups)
        elif rlimit:
            self.log.info("%s: no cgroups; RLIMIT_DATA %s per process", self._log_name, rlimit)
        join = preexec(procs, rlimit)  # as root: a demoted process may not join a cgroup
        if self.account is not None:
            return self.account.preexec(chdir=self.home_dir, umask=USER_UMASK, before=join)
        home = self.home_dir

        def preexec_fn():
            join()
            os.umask(USER_UMASK)
            os.chdir(home)

        return preexec_fn

    async def move_certs(self, paths):
        """Internal SSL is not used by the embedded hub: the certificates stay where they are."""
        return paths

    def _wants_r_helper(self):
        return bool(
            self.r_library
            and self.profile is not None
            and "ir" in self.profile.kernels
            and rlang.rscript() is not None
        )

    async def start(self):
        if self.system_users is not None:
            try:
                self.account = await asyncio.to_thread(self.system_users.ensure, self.user.name)
            except MlhubError as e:
                self.log.error("%s: no system account: %s", self._log_name, e.message)
                raise http_error(e) from None
        else:
            os.makedirs(self.home_dir, 0o700, exist_ok=True)
        if self._wants_r_helper():
            # An R kernel without the helper would only say "no package called 'mlhub'" later.
            try:
                await asyncio.to_thread(rlang.install_helper, self.r_library)
            except (OSError, RuntimeError, MlhubError) as exc:
                self.log.error("%s: mlhub R helper not installed: %s", self._log_name, exc)
        ip, port = await super().start()
        await self._until_it_answers(ip or "127.0.0.1", port)
        return ip, port

    async def _until_it_answers(self, ip, port):
        """Return once the new server answers HTTP (or its process ended, or ``http_timeout``
        passed: the hub's own wait then reports it). The hub polls a starting server with a
        full-jitter backoff whose pauses are up to 1.6-3.2 s long by the time a server is up
        (2-3 s), which the user sits through on the spawn page; polling every 50 ms here means
        the hub's first check, made at once, finds it up."""
        url = f"http://{ip}:{port}{self.server.base_url}api"
        deadline = time.monotonic() + self.http_timeout
        client = AsyncHTTPClient()
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                await client.fetch(url, request_timeout=2)
                return
            except HTTPClientError as e:
                if e.code < 500:  # any answer but an error of its own (599: no connection)
                    return
            except OSError:
                pass
            await asyncio.sleep(0.05)

    async def stop(self, now=False):
        """Stop the server, then whatever it left in its cgroups (orphaned kernels)."""
        await super().stop(now=now)
        if self.limit_method in ("auto", "cgroup"):
            cgroups = Cgroups.detect(parent=self.cgroup_parent or None)
            if cgroups:
                await asyncio.to_thread(cgroups.remove, self.cgroup_name)
