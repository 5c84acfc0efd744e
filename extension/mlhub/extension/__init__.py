"""What runs inside each user's notebook server (docs/design.md, ``extension/``).

* ``client``: ``mlhub.publish`` and ``mlhub.api_key``, from a kernel, with the kernel's hub token;
* ``widget``: the "Publish model" panel (``mlhub.publish_panel``);
* the Jupyter server extension (this module's entry points, ``handlers``, ``forwarder``):
  routes under ``{base_url}/mlhub/api/`` for the browser and the R helper.

Importing this package stays cheap (no tornado handlers, no ipywidgets) because the kernel
imports it for ``mlhub.publish``.
"""


def _jupyter_server_extension_points():
    return [{"module": "mlhub.extension"}]


def _load_jupyter_server_extension(serverapp):
    """Configure ``MlhubExtension`` from the server's config and add the ``/mlhub/api`` routes."""
    from mlhub.extension.forwarder import Forwarder
    from mlhub.extension.handlers import setup_handlers
    from mlhub.extension.settings import MlhubExtension

    settings = MlhubExtension(parent=serverapp)
    setup_handlers(serverapp.web_app, Forwarder(settings))
    if settings.publisher_url:
        serverapp.log.info("mlhub: publishing to %s as %r", settings.publisher_url, settings.user)
    else:
        serverapp.log.warning("mlhub: MLHUB_PUBLISHER_URL is not set; /mlhub/api will say so")
