"""What the browser tests and ``bench/notebook_times.py`` need to know about the hub's and
JupyterLab's pages: logging in and spawning as a user does, notebooks that name their kernel,
and when a notebook's kernel is ready.

Kept in one place because the obvious checks are wrong: JupyterLab's execution indicator reads
``idle`` while a notebook has no kernel at all ("No Kernel"), so waiting for it alone passes
before any kernel exists. The kernel is ready when the status bar's kernel item reads
``<kernel> | Idle`` and the indicator agrees. A dialog (``Select Kernel``, ``Error Starting
Kernel``) means the kernel did not start by itself, which for a notebook whose metadata names
an installed kernel is a fault worth failing on, not a step to click through.
"""

import json
import os

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_KERNEL_STATE = """() => {
  const dialog = document.querySelector('.jp-Dialog');
  if (dialog) return {dialog: dialog.innerText};
  const indicator = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
  const kernel = [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .map((item) => item.textContent)
    .find((text) => text.includes(' | '));
  const idle = indicator && indicator.dataset.status === 'idle' && kernel
    && kernel.endsWith(' | Idle') && !kernel.startsWith('No Kernel');
  return idle ? {kernel: kernel} : null;
}"""


SUBMIT = "input[type=submit], button[type=submit]"


def log_in(page, hub_url, user, password):
    """Log in through the hub's login form, as a user does; returns on the spawn page."""
    page.goto(f"{hub_url}hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click(SUBMIT)
    page.wait_for_url("**/hub/spawn**")


def spawn(page, user, profile, timeout):
    """On the spawn page, pick ``profile`` (its slug) and start; returns once the browser is at
    the user's server."""
    page.check(f"input[name=profile][value={profile}]")
    page.click(SUBMIT)
    page.wait_for_url(f"**/user/{user}/**", timeout=timeout)


def notebook(cells, kernel, display_name, language):
    """An nbformat 4 notebook of code ``cells`` (sources) that names its kernel, as a saved
    notebook does, so JupyterLab starts that kernel with no "Select Kernel" dialog."""
    code = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    return {
        "cells": [dict(code, source=source) for source in cells],
        "metadata": {
            "kernelspec": {"name": kernel, "display_name": display_name, "language": language}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write_notebook(path, cells, kernel, display_name, language):
    """Save ``notebook(...)`` at ``path`` (e.g. in a user's workspace), making its folder; the
    file belongs to the folder's owner, as a notebook the user made does (so their server can
    save it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook(cells, kernel, display_name, language)))
    folder = path.parent.stat()
    if os.geteuid() == 0:
        os.chown(path, folder.st_uid, folder.st_gid)


class KernelDialog(AssertionError):
    """JupyterLab showed a dialog instead of starting the notebook's kernel by itself."""

    def __init__(self, text):
        super().__init__(f"JupyterLab showed a dialog instead of starting the kernel: {text!r}")
        self.text = text


def wait_for_kernel(page, timeout=90_000):
    """Wait until the open notebook's kernel is idle; return the status text
    (``"Python 3 (ipykernel) | Idle"``). Raise ``KernelDialog`` if a dialog shows first."""
    state = page.wait_for_function(_KERNEL_STATE, timeout=timeout).json_value()
    if "dialog" in state:
        raise KernelDialog(state["dialog"])
    return state["kernel"]


def run_all_cells(page):
    """Run > Run All Cells, through the menu as a user does."""
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
