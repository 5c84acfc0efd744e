"""mlhub: instant notebook environments and one-click model publishing on JupyterHub.

``mlhub.publish``, ``mlhub.publish_panel`` and ``mlhub.api_key`` are the notebook entry points;
they are imported lazily so the hub, the publisher and the serving runtime never pay for
ipywidgets.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "api_key", "publish", "publish_panel"]


def __getattr__(name):
    if name in ("api_key", "publish", "publish_panel"):
        from mlhub.extension import client

        return getattr(client, name)
    raise AttributeError(f"module 'mlhub' has no attribute {name!r}")
