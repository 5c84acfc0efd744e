"""Running a standard image's container the way the image tests reach it: detached, with one
port published on 127.0.0.1, polled until it answers (failing at once, with the container's log,
if the container exits first)."""

import time

import requests

from mlhub.image_pipeline.smoke import published_port


def run_published(engine, image, port, **run_args):
    """Run ``image`` detached with its ``port`` published on 127.0.0.1 (more ``run_args`` for
    ``containers.run``: ``command``, ``environment``, ``volumes``); return the container and
    ``http://127.0.0.1:<published port>``. The caller removes the container."""
    container = engine.containers.run(
        image, ports={f"{port}/tcp": ("127.0.0.1", None)}, detach=True, **run_args
    )
    published = published_port(container, port)
    if not published:
        logs = container.logs().decode()
        container.remove(force=True)
        raise AssertionError(f"{image} published no port {port}:\n{logs}")
    return container, f"http://127.0.0.1:{published}"


def wait_answer(container, url, headers=None, timeout=120, interval=0.5):
    """GET ``url`` until it answers 200 and return that reply; fail with the container's log
    if the container exits or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = requests.get(url, headers=headers, timeout=5)
            if reply.status_code == 200:
                return reply
        except requests.ConnectionError:
            pass
        container.reload()
        assert container.status != "exited", container.logs().decode()
        time.sleep(interval)
    raise AssertionError(f"{url} did not answer in {timeout} s:\n{container.logs().decode()}")
