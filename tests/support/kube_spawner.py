"""KubeSpawner without a cluster (``_mock=True``): the pod it would create, as a dict. The
``spawner_for`` fixture that makes one is in tests/unit/conftest.py."""

from kubernetes_asyncio.client import ApiClient

# A kubeconfig naming a local port nothing listens on: enough for a Kubernetes client to load
# (KubeSpawner makes one at start), and nothing is ever sent to it.
UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def pod_dict(pod):
    return ApiClient().sanitize_for_serialization(pod)


async def pod_for(spawner):
    await spawner.load_user_options()
    return pod_dict(await spawner.get_pod_manifest())
