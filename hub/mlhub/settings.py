"""mlhub's own settings, shared by ``mlhub up``, the JupyterHub config and the publisher.

Every setting is a trait of ``MlhubSettings``. They come, lowest precedence first, from the
defaults, the optional mlhub config file (a traitlets Python file named by ``MLHUB_CONFIG_FILE``
or ``mlhub up --config``) and environment variables ``MLHUB_<NAME>`` (``MLHUB_DATA_DIR``,
``MLHUB_PORT``, ...; this is how ``mlhub up --data-dir/--port`` reach the hub's processes).

The same config file is loaded last by ``jupyterhub_config.py``, so it can also hold any
JupyterHub, Spawner or Authenticator setting, for example::

    c.MlhubSettings.port = 9000
    c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
"""

import functools
import hashlib
import os
import re
import sys
from pathlib import Path

from traitlets import Bool, Enum, Float, Integer, TraitError, Unicode, default, validate
from traitlets.config import Config, Configurable, PyFileConfigLoader

from mlhub.errors import MlhubError
from mlhub.profiles import PROFILES_DIR

CONFIG_FILE_ENV = "MLHUB_CONFIG_FILE"
PUBLISHER_SERVICE = "mlhub-publisher"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")


def safe_name(name):
    """``name`` if it is safe as one path component, else a readable escaped form + hash
    (distinct names stay distinct): how a hub user's workspace folder is named."""
    if _SAFE_NAME.match(name) and len(name) <= 100:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80].lstrip("._") or "user"
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class MlhubSettings(Configurable):
    """Where mlhub keeps its state and which addresses its processes use."""

    data_dir = Unicode(
        help="""Folder holding all embedded-mode state: the JupyterHub and account databases,
        secrets, the publisher store, artifacts, logs and the users' workspaces.

        Default: ``./mlhub-data`` (resolved to an absolute path). Environment: ``MLHUB_DATA_DIR``.
        Example: ``c.MlhubSettings.data_dir = "/srv/mlhub"``.
        """,
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self):
        return str(Path("mlhub-data").resolve())

    @validate("data_dir")
    def _absolute_data_dir(self, proposal):
        return str(Path(proposal.value).expanduser().resolve())

    accounts_db = Unicode(
        help="""Where the login accounts (``mlhub users ...``) are kept. Default: empty, for the
        SQLite file ``<data_dir>/accounts.sqlite``. Or a PostgreSQL URL
        (``postgresql://user@host:5432/db``; a SQLAlchemy driver such as ``+psycopg`` is
        ignored) for a table ``mlhub_accounts`` there, e.g. the hub's own database when the
        Kubernetes chart runs it on PostgreSQL. Put the password in ``PGPASSWORD``, not in the
        URL. Environment: ``MLHUB_ACCOUNTS_DB``.
        """,
    ).tag(config=True)

    def accounts_location(self):
        """The accounts database: ``accounts_db``, or the SQLite file in the data directory."""
        return self.accounts_db or self.path("accounts.sqlite")

    mode = Enum(
        ["embedded", "kubernetes"],
        "embedded",
        help="""How user servers run: ``embedded`` (local processes on this machine, the
        ``ProfileLocalSpawner``) or ``kubernetes`` (KubeSpawner pods from the profile images).

        Default: ``embedded``. Environment: ``MLHUB_MODE``.
        """,
    ).tag(config=True)

    ip = Unicode(
        "127.0.0.1",
        help="""Address the public proxy listens on. Default ``127.0.0.1`` (this machine only);
        ``0.0.0.0`` serves every interface. Environment: ``MLHUB_IP``.
        """,
    ).tag(config=True)

    internal_ip = Unicode(
        "127.0.0.1",
        help="""Address the hub API and the publisher listen on, and at which the proxy, the
        publisher and pods reach them. Default ``127.0.0.1`` (embedded mode: only this machine
        needs them). With models or user servers in Kubernetes pods it must be an address pods
        can reach, e.g. the docker bridge ``172.17.0.1`` for the test cluster of
        ``scripts/kube-cluster``. Environment: ``MLHUB_INTERNAL_IP``.
        """,
    ).tag(config=True)

    port = Integer(
        8000,
        help="""Port of the public proxy: the URL users open. Default 8000.
        Environment: ``MLHUB_PORT``; ``mlhub up --port 9000`` sets it.
        """,
    ).tag(config=True)

    # The internal ports follow the public one (8000 -> 8081, 8001, 8090; 9000 -> 9081, 9001,
    # 9090), so a second instance started with another --port takes none of the first's.
    hub_port = Integer(
        help="""Port of the JupyterHub process itself (always on 127.0.0.1); its API is
        ``http://127.0.0.1:<hub_port>/hub/api``. Default ``port + 81`` (8081).
        Environment: ``MLHUB_HUB_PORT``.
        """,
    ).tag(config=True)

    @default("hub_port")
    def _default_hub_port(self):
        return self.port + 81

    proxy_api_port = Integer(
        help="""Port of the proxy's REST API on 127.0.0.1 (the hub and the publisher add routes
        through it). Default ``port + 1`` (8001). Environment: ``MLHUB_PROXY_API_PORT``.
        """,
    ).tag(config=True)

    @default("proxy_api_port")
    def _default_proxy_api_port(self):
        return self.port + 1

    proxy_timeout = Float(
        900.0,
        help="""Seconds the proxy waits for the answer of what it routes to (a user server,
        the publisher, a model) before it answers 503. Default 900: an upload waits while the
        new version loads (its readiness is the load check, up to
        ``LocalDeployer.ready_timeout``, 300 s by default), so a shorter wait would cut any
        model slower to load than that. Environment: ``MLHUB_PROXY_TIMEOUT``.
        """,
    ).tag(config=True)

    proxy_dir = Unicode(
        help="""Where the embedded mode's proxy is installed: configurable-http-proxy from npm
        and its Node.js, pinned by ``images/proxy/package-lock.json``, which
        ``scripts/install-proxy`` (run by ``make install``) puts there. Default
        ``<venv>/share/mlhub/proxy``. Environment: ``MLHUB_PROXY_DIR``.
        """,
    ).tag(config=True)

    @default("proxy_dir")
    def _default_proxy_dir(self):
        return os.path.join(sys.prefix, "share", "mlhub", "proxy")

    proxy_headers_timeout = Float(
        20.0,
        help="""Seconds a client has to send a request's headers to the proxy; one slower is
        answered 408 and closed. Default 20. Environment: ``MLHUB_PROXY_HEADERS_TIMEOUT``.
        """,
    ).tag(config=True)

    proxy_request_timeout = Float(
        300.0,
        help="""Seconds a client has to send a whole request, body included, to the proxy; one
        slower is answered 408 and closed (a 100 MB bundle at 1 MB/s fits). Default 300.
        Environment: ``MLHUB_PROXY_REQUEST_TIMEOUT``.
        """,
    ).tag(config=True)

    publisher_port = Integer(
        help="""Port of the publisher service on 127.0.0.1; users reach it through the proxy at
        ``/services/mlhub-publisher/``. Default ``port + 90`` (8090).
        Environment: ``MLHUB_PUBLISHER_PORT``.
        """,
    ).tag(config=True)

    @default("publisher_port")
    def _default_publisher_port(self):
        return self.port + 90

    public_url = Unicode(
        help="""URL users and clients reach the hub at, with a trailing slash; model URLs and
        the notebook's ``MLHUB_PUBLIC_URL`` are built from it. Set it when a reverse proxy or DNS
        name fronts the hub, e.g. ``https://mlhub.example.org/``.

        Default: ``http://<ip>:<port>/`` (``127.0.0.1`` when ``ip`` is every interface).
        Environment: ``MLHUB_PUBLIC_URL``.
        """,
    ).tag(config=True)

    @default("public_url")
    def _default_public_url(self):
        host = self.ip if self.ip not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}/"

    @validate("public_url")
    def _trailing_slash(self, proposal):
        return proposal.value.rstrip("/") + "/"

    profiles_dir = Unicode(
        str(PROFILES_DIR),
        help="""Folder of spawner profile files (``*.yaml``, see ``profile.schema.json``).
        Default: the profiles shipped in ``spawner_profiles/``. Environment: ``MLHUB_PROFILES_DIR``.
        Example: ``c.MlhubSettings.profiles_dir = "/etc/mlhub/profiles"``.
        """,
    ).tag(config=True)

    admin_user = Unicode(
        "admin",
        help="""Name of the admin account ``mlhub up`` creates on first start (its generated
        password is written to ``<data_dir>/admin_password``). Default ``admin``.
        Environment: ``MLHUB_ADMIN_USER``.
        """,
    ).tag(config=True)

    workspaces_dir = Unicode(
        help="""Folder holding one workspace per hub user (``<workspaces_dir>/<user>/``), the
        user's notebook root and ``$HOME``; in multi-user mode owned by the user's system
        account, mode 0700. Default: ``<data_dir>/workspaces``. Environment:
        ``MLHUB_WORKSPACES_DIR``.
        """,
    ).tag(config=True)

    @default("workspaces_dir")
    def _default_workspaces_dir(self):
        return self.path("workspaces")

    @validate("workspaces_dir")
    def _absolute_workspaces_dir(self, proposal):
        return str(Path(proposal.value).expanduser().resolve())

    user_mode = Enum(
        ["auto", "multi", "single"],
        "auto",
        help="""Embedded mode only: whose rights each user's code runs with.

        ``multi``: every hub user gets a system account of their own
        (``<system_user_prefix><name>``, made by ``mlhub users add`` or at the first spawn or
        publish); their notebook server, kernels, terminals and published models run as that
        account, and the platform's state is readable by root alone. Needs ``mlhub up`` to run
        as root. ``single``: everything runs as the account that runs ``mlhub up`` (a laptop,
        one person); a second login account is refused unless ``shared_single_user`` is set.
        ``auto``: ``multi`` when ``mlhub up`` runs as root, else ``single``.

        Default: ``auto``. Environment: ``MLHUB_USER_MODE``.
        """,
    ).tag(config=True)

    system_user_prefix = Unicode(
        "mlhub-",
        help="""Multi-user mode: the prefix of the system account of each hub user, e.g.
        ``mlhub-alice`` for ``alice``. Names that are not valid system user names (or too long)
        are shortened and given a hash, so every hub user gets an account of their own.
        Default: ``mlhub-``. Environment: ``MLHUB_SYSTEM_USER_PREFIX``.
        """,
    ).tag(config=True)

    @validate("system_user_prefix")
    def _valid_prefix(self, proposal):
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,11}", proposal.value):
            raise ValueError(
                f"system_user_prefix {proposal.value!r}: use 1-12 lower-case letters, digits "
                "or '-', starting with a letter"
            )
        return proposal.value

    shared_single_user = Bool(
        False,
        help="""Single-user mode: allow more than one login account although every account's
        code runs as the same system account (anyone can read and change everyone's files,
        models and the platform's secrets). ``mlhub up`` then prints a warning at every start.
        For a trusted group trying mlhub out; a shared server should run multi-user mode
        (``mlhub up`` as root). Default: False. Environment: ``MLHUB_SHARED_SINGLE_USER``.
        """,
    ).tag(config=True)

    config_file = Unicode(
        "",
        help="""The mlhub config file these settings were read from ("" if none). Set from
        ``MLHUB_CONFIG_FILE``; passed on to the hub and the publisher.
        """,
    )

    def path(self, *parts):
        """A path inside the data directory, e.g. ``settings.path("logs")``."""
        return os.path.join(self.data_dir, *parts)

    def workspace(self, user):
        """The workspace folder of hub user ``user``."""
        return os.path.join(self.workspaces_dir, safe_name(user))

    @property
    def multi_user(self):
        """Whether users' code runs under system accounts of their own (embedded mode)."""
        if self.mode != "embedded":
            return False
        if self.user_mode == "auto":
            return os.geteuid() == 0
        return self.user_mode == "multi"

    def check_user_mode(self):
        """Refuse what this process cannot do: multi-user mode needs root, and the data
        directory must be this account's (a root-owned one is a multi-user install).

        In Kubernetes mode the data directory is the hub's volume, which belongs to whoever
        the provisioner made it for (root, shared with the pod's ``fsGroup``), and users' code
        runs in pods of its own: there it only has to be writable."""
        if self.multi_user and os.geteuid() != 0:
            raise MlhubError(
                "user_mode is 'multi' (a system account per user), which needs root: run "
                "mlhub as root, or set c.MlhubSettings.user_mode = 'single' for one person"
            )
        try:
            owner = os.stat(self.data_dir).st_uid
        except FileNotFoundError:
            return
        if self.mode != "embedded":
            if not os.access(self.data_dir, os.W_OK | os.X_OK):
                raise MlhubError(
                    f"the data directory {self.data_dir} is not writable by this account (uid "
                    f"{os.geteuid()}, groups {sorted(os.getgroups())}): give the pod an fsGroup "
                    "that owns its volume (the JupyterHub chart's hub pod has fsGroup 1000)"
                )
            return
        if owner != os.geteuid() and os.geteuid() != 0:
            raise MlhubError(
                f"the data directory {self.data_dir} belongs to uid {owner}, not to this "
                f"account (uid {os.geteuid()}): run mlhub as its owner"
                + (" (sudo mlhub ...: it is a multi-user install)" if owner == 0 else "")
            )

    def system_users(self):
        """The system accounts of multi-user mode (``mlhub.sysusers.SystemUsers``), or None
        in single-user and Kubernetes mode, where no system account is made."""
        if not self.multi_user:
            return None
        from mlhub.sysusers import SystemUsers

        return SystemUsers(self.system_user_prefix, self.workspace)

    @property
    def publisher_url(self):
        """The publisher as users reach it through the proxy."""
        return f"{self.public_url}services/{PUBLISHER_SERVICE}/"

    @property
    def publisher_service_url(self):
        """The publisher's own address (the hub's proxy and pods reach it there)."""
        return f"http://{self.internal_ip}:{self.publisher_port}"

    @property
    def proxy_api_url(self):
        return f"http://127.0.0.1:{self.proxy_api_port}"

    def proxy_command(self):
        """The proxy's command: configurable-http-proxy from npm on the Node.js installed beside
        it, with ``proxy_timeouts.js`` loaded first and its settings in its environment (``env``
        sets them: JupyterHub starts the proxy with its own environment). ``MlhubError`` saying
        how to install it when it is not there."""
        modules = os.path.join(self.proxy_dir, "node_modules")
        node = os.path.join(modules, ".bin", "node")
        chp = os.path.join(modules, "configurable-http-proxy", "bin", "configurable-http-proxy")
        if not (os.access(node, os.X_OK) and os.path.isfile(chp)):
            raise MlhubError(
                f"the proxy (configurable-http-proxy from npm) is not installed in "
                f"{self.proxy_dir}: run `make install`, or `scripts/install-proxy {sys.prefix}` "
                "(MlhubSettings.proxy_dir says where it is)"
            )
        timeouts = [f"{k}={v}" for k, v in self._proxy_timeouts().items()]
        return [
            "env",
            *timeouts,
            node,
            "--require",
            str(Path(__file__).with_name("proxy_timeouts.js")),
            chp,
            f"--proxy-timeout={int(self.proxy_timeout * 1000)}",  # milliseconds
        ]

    def _proxy_timeouts(self):
        """What ``proxy_timeouts.js`` reads: the proxy's read timeouts, in milliseconds."""
        headers_ms = int(self.proxy_headers_timeout * 1000)
        return {
            "MLHUB_PROXY_HEADERS_TIMEOUT_MS": str(headers_ms),
            "MLHUB_PROXY_REQUEST_TIMEOUT_MS": str(int(self.proxy_request_timeout * 1000)),
            # Node checks the timeouts at this interval (its default, 30 s, would let a slow
            # client stay up to that much longer)
            "MLHUB_PROXY_TIMEOUT_CHECK_MS": str(max(250, min(headers_ms // 4, 5000))),
        }


def read_config_file(path):
    """The traitlets ``Config`` in a Python config file (``c.X.y = ...``)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise MlhubError(f"mlhub config file not found: {path}")
    try:
        return PyFileConfigLoader(path.name, str(path.parent)).load_config()
    except Exception as e:  # the file is Python: any error in it is the file's
        raise MlhubError(f"cannot read the mlhub config file {path}: {e!r}") from e


# Kubernetes gives every pod ``<SERVICE>_PORT=tcp://<ip>:<port>`` for each Service of its
# namespace ("service links"): the Service mlhub-publisher sets MLHUB_PUBLISHER_PORT. Not a setting.
_SERVICE_LINK = re.compile(r"(tcp|udp|sctp)://")


def load_settings(environ=None):
    """Settings from the config file in ``MLHUB_CONFIG_FILE`` (if any) and ``MLHUB_*`` variables.

    A variable whose value does not fit its setting is an error naming both; a Kubernetes
    service link that happens to look like one (``MLHUB_PUBLISHER_PORT=tcp://...``) is skipped.
    """
    environ = os.environ if environ is None else environ
    config_file = environ.get(CONFIG_FILE_ENV, "")
    config = read_config_file(config_file) if config_file else Config()
    settings = MlhubSettings(config=config)
    if config_file:
        settings.config_file = str(Path(config_file).expanduser().resolve())
    for name, trait in settings.traits(config=True).items():
        variable = f"MLHUB_{name.upper()}"
        value = environ.get(variable)
        if not value or _SERVICE_LINK.match(value):
            continue
        try:
            setattr(settings, name, trait.from_string(value))
        except (ValueError, TraitError) as e:
            raise MlhubError(
                f"{variable}={value!r} is not a valid MlhubSettings.{name}: {e}"
            ) from None
    return settings


@functools.cache
def hub_settings():
    """This process's settings, read once: what the spawner and authenticator default to."""
    return load_settings()
