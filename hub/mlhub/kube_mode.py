"""What the kubernetes mode sets on JupyterHub, as pure functions of the settings.

``jupyterhub_config.py`` applies these in kubernetes mode, and the Helm chart in ``deploy/``
passes the same values to the JupyterHub chart (``tests/unit/test_chart_values.py`` keeps the
two equal), so a hub started either way spawns the same pods and culls the same servers.
Every value here is a default: the mlhub config file is loaded after them, so
``c.KubeSpawner.storage_capacity = "50Gi"`` (or any other KubeSpawner trait) wins.

Kept apart from ``mlhub.kube_spawner`` so these can be checked as plain dicts without
importing KubeSpawner or a Kubernetes client.
"""

import sys

from traitlets import Integer, default
from traitlets.config import Configurable

# The user's workspace: one PVC per user (not per named server), mounted as the home folder.
WORKSPACE_VOLUME = "workspace"
WORKSPACE_PVC = "mlhub-workspace-{username}"
HOME = "/home/jovyan"
# Non-root pods: the notebook images' user, and the group that owns the workspace volume.
USER_UID = 1000
USER_GID = 100

CULLER_SERVICE = "idle-culler"
# What jupyterhub-idle-culler needs and nothing more (its README, "Permissions"): find users'
# servers, read their last activity, stop them. No access:services and no custom:mlhub:* scope,
# so it cannot reach the publisher or anything it runs; published models are not hub servers,
# so ``list:users`` never shows them to it in the first place.
CULLER_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")


def kubespawner_defaults(publisher_url, public_url):
    """KubeSpawner traits of the kubernetes mode: ``{trait: value}``.

    Workspace: the PVC ``mlhub-workspace-<user>`` (10Gi, ReadWriteOnce, the cluster's default
    storage class unless ``storage_class`` is set), created on first start and kept when the
    server stops, mounted at ``/home/jovyan``. Pods run as uid 1000 / gid 100 with the volume's
    group set to 100, no privilege escalation and no capabilities. Timeouts allow a first image
    pull on a node (5 min to a running pod, 2 min more to an answering server). Spawn progress
    comes from the pod's events, shown on the spawn page.
    """
    return {
        # jupyterhub-singleuser through mlhub's launcher (2 s sooner, see the module), as the
        # standard notebook images' CMD; given here so the profile's kernel arguments reach it.
        # A profile whose image lacks mlhub sets kubespawner_override {cmd: [...]}.
        "cmd": ["python", "-m", "mlhub.extension.singleuser"],
        "default_url": "/lab",
        "image_pull_policy": "IfNotPresent",
        "start_timeout": 300,
        "http_timeout": 120,
        "events_enabled": True,
        "storage_pvc_ensure": True,
        "pvc_name_template": WORKSPACE_PVC,
        "storage_capacity": "10Gi",
        "storage_access_modes": ["ReadWriteOnce"],
        "volumes": [
            {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
        ],
        "volume_mounts": [{"name": WORKSPACE_VOLUME, "mountPath": HOME}],
        "working_dir": HOME,
        "uid": USER_UID,
        "gid": USER_GID,
        "fs_gid": USER_GID,
        "allow_privilege_escalation": False,
        # the restricted Pod Security Standard, for every profile's pod (kube_objects)
        "container_security_context": {
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "environment": {
            "MLHUB_PUBLISHER_URL": publisher_url,
            "MLHUB_PUBLIC_URL": public_url,
        },
    }


class IdleCuller(Configurable):
    """Stops notebook servers nobody used for a while (jupyterhub-idle-culler, a hub service).

    Only user servers are culled: published models run apart from the hub (Deployments made by
    the publisher), so the culler neither sees nor can stop them; see ``CULLER_SCOPES``.
    """

    timeout = Integer(
        3600,
        help="""Seconds a notebook server may go without activity (no open tab, no running
        kernel activity reported to the hub) before it is stopped; its workspace is kept.
        0 turns culling off. Default 3600. Example: ``c.IdleCuller.timeout = 8 * 3600``.
        """,
    ).tag(config=True)

    every = Integer(
        help="""Seconds between two culling rounds. Default: a tenth of ``timeout``, at least
        60 and at most 600.
        """,
    ).tag(config=True)

    @default("every")
    def _default_every(self):
        return min(600, max(60, self.timeout // 10))

    concurrency = Integer(
        5,
        help="Most hub API requests the culler makes at once. Default 5.",
    ).tag(config=True)

    @property
    def enabled(self):
        return self.timeout > 0

    def service(self, python=sys.executable):
        """The ``c.JupyterHub.services`` entry running the culler with ``python``."""
        return {
            "name": CULLER_SERVICE,
            "command": [
                python,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={self.timeout}",
                f"--cull-every={self.every}",
                f"--concurrency={self.concurrency}",
            ],
        }

    @staticmethod
    def role():
        """The ``c.JupyterHub.load_roles`` entry giving the culler its scopes."""
        return {"name": CULLER_SERVICE, "scopes": list(CULLER_SCOPES), "services": [CULLER_SERVICE]}
