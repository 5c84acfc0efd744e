"""KubeSpawner without a cluster (``_mock=True``): the pod it would create, as a dict. The
``spawner_for`` fixture that makes one is in tests/unit/conftest.py."""

from kubernetes_asyncio.client import ApiClient


def pod_dict(pod):
    return ApiClient().sanitize_for_serialization(pod)


async def pod_for(spawner):
    await spawner.load_user_options()
    return pod_dict(await spawner.get_pod_manifest())
