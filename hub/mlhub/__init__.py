"""mlhub: instant notebook environments and one-click model publishing on JupyterHub.

``mlhub.publish``, ``mlhub.publish_panel`` and ``mlhub.api_key`` are the notebook entry points,
with ``mlhub.set_alias`` and ``mlhub.aliases`` to move a model's aliases, ``mlhub.canary`` to
send a share of its requests to another version, ``mlhub.shadow`` and ``mlhub.compare`` to try
one on production's requests without answering with it, and ``mlhub.inference_log`` and
``mlhub.drift`` to see what a published model is asked; they
are imported lazily so the hub, the publisher and the serving runtime never pay for ipywidgets
or pandas.
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "aliases",
    "api_key",
    "canary",
    "compare",
    "drift",
    "inference_log",
    "publish",
    "publish_panel",
    "set_alias",
    "shadow",
]


def __getattr__(name):
    if name in ("aliases", "api_key", "canary", "publish", "publish_panel", "set_alias", "shadow"):
        from mlhub.extension import client

        return getattr(client, name)
    if name in ("inference_log", "drift", "compare"):
        from mlhub.extension import insight

        return getattr(insight, name)
    raise AttributeError(f"module 'mlhub' has no attribute {name!r}")
