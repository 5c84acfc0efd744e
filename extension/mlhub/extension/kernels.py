"""A kernel started with the server, handed to the first notebook that asks for one.

Opening a notebook right after a spawn waits for its kernel: a new ipykernel process importing
IPython, about 1 s of a 2-core machine, after JupyterLab's page has loaded. The server can start
that kernel while the browser is still loading the page, so the first notebook finds it running.
``WarmKernelManager`` (jupyter_server's kernel manager; mlhub's server extension makes it the
server's unless ``ServerApp.kernel_manager_class`` names another) starts one kernel of the
default kernel spec (the profile's first kernel) in the server's root directory as soon as the
server runs, and gives it to the first request for a new kernel of that spec whose notebook is
in that directory. Any other request, and every later one, starts a kernel as usual; one unused
kernel costs its memory (tens of MB) until the server stops or it is shut down like any other.

What a kernel started this way lacks: the ``JPY_SESSION_NAME`` environment variable jupyter_server
gives a session's kernel (its notebook's path), which IPython shows as ``__session__``.
"""

import asyncio

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from traitlets import Bool


class WarmKernelManager(AsyncMappingKernelManager):
    """jupyter_server's kernel manager with one kernel started ahead (see the module)."""

    warm_kernel = Bool(
        True,
        config=True,
        help="""Start one kernel of the default kernel spec with the server and hand it to the
        first notebook in the root directory that asks for a kernel of that spec (default True;
        False: every kernel starts when asked for).""",
    )

    _warm = None  # the start of the kernel started ahead: a task giving its id

    def start_warm(self):
        """Start the kernel ahead, in the background (the server's event loop is running)."""
        if self.warm_kernel and self._warm is None:
            self._warm = asyncio.ensure_future(
                super().start_kernel(path="", kernel_name=self.default_kernel_name)
            )

    async def _take_warm(self, kernel_id, path, kernel_name):
        """The kernel started ahead if this request may have it, else None."""
        warm, name = self._warm, kernel_name or self.default_kernel_name
        fits = kernel_id is None and name == self.default_kernel_name
        if warm is None or not fits or self.cwd_for_path(path or "") != self.root_dir:
            return None
        self._warm = None
        try:
            taken = await warm
        except Exception as e:  # a kernel that failed to start ahead: start one as usual
            self.log.warning("mlhub: the kernel started ahead failed: %s", e)
            return None
        if taken not in self:  # shut down or died meanwhile
            return None
        self.log.info("mlhub: handing kernel %s, started with the server, to %s", taken, path)
        return taken

    async def start_kernel(self, *, kernel_id=None, path=None, **kwargs):
        taken = await self._take_warm(kernel_id, path, kwargs.get("kernel_name"))
        if taken is not None:
            return taken
        return await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)
