"""Kubernetes objects as the platform builds them, for the tests that check them statically
(Pod Security rules, API schemas)."""

from mlhub.deployers.base import ModelRef
from mlhub.deployers.kube_objects import make_deployment


def model_deployment(**extra):
    """A model's Deployment as the publisher builds it (two replicas, a memory limit; ``extra``:
    more of ``make_deployment``'s arguments)."""
    return make_deployment(
        ModelRef("alice", "iris"),
        "models",
        version="sha256:" + "ab" * 32,
        replicas=2,
        image="mlhub/serving-python:1",
        bundle_url="http://pub/bundle",
        url_prefix="/models/alice/iris",
        hub_api_url="http://hub:8081/hub/api",
        resources={"limits": {"memory": "1Gi"}},
        **extra,
    )
