"""The JupyterHub configuration of mlhub, for both modes (``jupyterhub -f`` this file).

Everything mlhub-specific comes from ``MlhubSettings`` (``mlhub.settings``: the optional mlhub
config file named by ``MLHUB_CONFIG_FILE`` plus ``MLHUB_*`` variables); this file only maps those
settings onto JupyterHub. The mlhub config file is loaded again at the end, so any JupyterHub,
Spawner or Authenticator setting written there wins over what is set here, e.g.::

    c.JupyterHub.authenticator_class = "oauthenticator.GenericOAuthenticator"

Embedded mode: proxy, hub and publisher on 127.0.0.1, state in the data directory, users'
servers from ``ProfileLocalSpawner``. Kubernetes mode (``MLHUB_MODE=kubernetes``): the same hub,
with user servers as pods from ``ProfileKubeSpawner`` (the same profiles as KubeSpawner's
``profile_list``, checked by group on the server side too; a workspace PVC per user; the
defaults in ``mlhub.kube_mode``, each overridable as ``c.KubeSpawner.<trait>``) and idle
servers stopped by jupyterhub-idle-culler (``c.IdleCuller.timeout``). The Helm chart in
``deploy/`` passes the same settings to the official JupyterHub chart.
"""

import os
import sys

from jupyterhub.roles import get_default_roles

from mlhub.accounts import ADMIN_GROUP
from mlhub.authenticator import MlhubAuthenticator
from mlhub.kube_mode import IdleCuller, kubespawner_defaults
from mlhub.profiles import load_profiles
from mlhub.settings import PUBLISHER_SERVICE, load_settings
from mlhub.up import ensure_secret

c = get_config()  # noqa: F821 (defined by traitlets when it runs this file)
settings = load_settings()

# A broken profile stops start-up here, with the file and field named.
load_profiles(settings.profiles_dir)

# -- addresses and state -------------------------------------------------------------------
c.JupyterHub.ip = settings.ip
c.JupyterHub.port = settings.port
c.JupyterHub.hub_ip = settings.internal_ip
c.JupyterHub.hub_port = settings.hub_port
c.JupyterHub.db_url = f"sqlite:///{settings.path('jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = settings.path("jupyterhub_cookie_secret")
c.JupyterHub.pid_file = settings.path("jupyterhub.pid")
# Stopping the hub stops every user server; the next start begins clean.
c.JupyterHub.cleanup_servers = True

# -- the proxy: configurable-http-proxy from npm, JupyterHub's reference proxy ---------------
# (it passes headers and the WebSocket subprotocol as clients send them; the PyPI port did not)
proxy_token = ensure_secret(settings.path("proxy_token"))
c.JupyterHub.proxy_class = "configurable-http-proxy"
c.ConfigurableHTTPProxy.command = settings.proxy_command()
c.ConfigurableHTTPProxy.api_url = settings.proxy_api_url
c.ConfigurableHTTPProxy.auth_token = proxy_token
c.ConfigurableHTTPProxy.pid_file = settings.path("jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.should_start = True

# -- login: mlhub accounts (mlhub users ...); the accounts are the gate ------------------------
c.JupyterHub.authenticator_class = MlhubAuthenticator
c.Authenticator.allow_all = True

# -- user servers ---------------------------------------------------------------------------
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120  # seconds from spawn request to a running process
c.Spawner.http_timeout = 60  # seconds from a running process to an answering server
culler = IdleCuller(config=settings.config)
if settings.mode == "embedded":
    c.JupyterHub.spawner_class = "mlhub.spawner.ProfileLocalSpawner"
else:
    # KubeSpawner pods: profiles filtered by group, a workspace PVC per user, non-root,
    # spawn progress from the pod's events (mlhub.kube_mode). Pods reach the hub API and the
    # publisher directly at MlhubSettings.internal_ip, which must be routable from the cluster
    # (the docker bridge for the test cluster; the Helm chart runs them as Services).
    c.JupyterHub.spawner_class = "mlhub.kube_spawner.ProfileKubeSpawner"
    pod_publisher_url = f"{settings.publisher_service_url}/services/{PUBLISHER_SERVICE}/"
    for trait, value in kubespawner_defaults(pod_publisher_url, settings.public_url).items():
        setattr(c.KubeSpawner, trait, value)

# -- the publisher, a hub-managed service ------------------------------------------------------
publisher_env = {
    # every MLHUB_* setting the hub got (mlhub up --port, MLHUB_USER_MODE, ...): the publisher
    # reads the same MlhubSettings (JupyterHub gives services none of its own environment)
    **{name: value for name, value in os.environ.items() if name.startswith("MLHUB_")},
    "MLHUB_DATA_DIR": settings.data_dir,
    "CONFIGPROXY_AUTH_TOKEN": proxy_token,
    "MLHUB_PROXY_API_URL": settings.proxy_api_url,
    "MLHUB_PUBLIC_URL": settings.public_url,
}
if settings.config_file:
    publisher_env["MLHUB_CONFIG_FILE"] = settings.config_file
c.JupyterHub.services = [
    {
        "name": PUBLISHER_SERVICE,
        "url": settings.publisher_service_url,
        "command": [sys.executable, "-m", "mlhub.publisher"],
        "environment": publisher_env,
        "oauth_no_confirm": True,
        # what a browser's OAuth token for the publisher may carry (if the user holds it)
        "oauth_client_allowed_scopes": ["custom:mlhub:models", "custom:mlhub:admin"],
    }
]
if settings.mode == "kubernetes" and culler.enabled:
    # Idle notebook servers are stopped (their workspace PVC stays). Its role (below) cannot
    # reach the publisher, so published models are never culled.
    c.JupyterHub.services.append(culler.service())

# -- scopes and roles (docs/internals.md, "Scopes") --------------------------------------------
c.JupyterHub.custom_scopes = {
    "custom:mlhub:models": {
        "description": "Publish, update, scale, share and delete your own models.",
    },
    "custom:mlhub:admin": {
        "description": "Manage every user's published models.",
    },
}
server_role = next(r for r in get_default_roles() if r["name"] == "server")
c.JupyterHub.load_roles = [
    {
        "name": "user",
        "scopes": ["self", "access:services", "custom:mlhub:models"],
    },
    {
        # the notebook's JUPYTERHUB_API_TOKEN: JupyterHub's defaults + reaching the publisher
        "name": "server",
        "scopes": [
            *server_role["scopes"],
            f"access:services!service={PUBLISHER_SERVICE}",
            "custom:mlhub:models",
        ],
    },
    {
        # publisher admins: the group mlhub accounts put hub admins in (other authenticators
        # can put their admins there too); the hub's own admin role cannot be extended
        "name": "mlhub-admin",
        "scopes": ["custom:mlhub:admin"],
        "groups": [ADMIN_GROUP],
    },
    {
        # the publisher's own token: who users are, their groups and admin flag
        "name": PUBLISHER_SERVICE,
        "scopes": ["list:users", "read:users", "list:groups", "read:groups"],
        "services": [PUBLISHER_SERVICE],
    },
]
if settings.mode == "kubernetes" and culler.enabled:
    c.JupyterHub.load_roles.append(culler.role())

# -- last: the mlhub config file may override any of the above ---------------------------------
if settings.config_file:
    load_subconfig(settings.config_file)  # noqa: F821 (defined by traitlets)
