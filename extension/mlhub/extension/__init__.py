"""What runs inside each user's notebook server (docs/design.md, ``extension/``).

* ``client``: ``mlhub.publish`` and ``mlhub.api_key``, from a kernel, with the kernel's hub token;
* ``widget``: the "Publish model" panel (``mlhub.publish_panel``);
* the Jupyter server extension (this module's entry points, ``handlers``, ``forwarder``):
  routes under ``{base_url}/mlhub/api/`` for the browser and the R helper, and a kernel started
  with the server for the first notebook (``kernels``).

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


def _link_jupyter_server_extension(serverapp):
    """Before the server makes its kernel manager: mlhub's (``kernels``), unless another is
    configured or kernels run on a gateway."""
    import os

    from mlhub.extension.kernels import WarmKernelManager

    configured = "kernel_manager_class" in serverapp.config.get("ServerApp", {})
    gateway = serverapp.config.get("GatewayClient", {}).get("url") or os.environ.get(
        "JUPYTER_GATEWAY_URL"
    )
    if not configured and not gateway:
        serverapp.kernel_manager_class = WarmKernelManager


async def _start_jupyter_server_extension(serverapp):
    """The server's event loop runs: start the kernel the first notebook will get."""
    from mlhub.extension.kernels import WarmKernelManager

    if isinstance(serverapp.kernel_manager, WarmKernelManager):
        serverapp.kernel_manager.start_warm()
