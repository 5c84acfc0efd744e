"""Run the smoke test an image declares in its ``image.yaml`` (format: images/README.md).

Steps run in order, each in a fresh container of the image:

- ``run``: the container runs this command; it must exit 0 and print every ``expect`` string.
- ``serve``: the container runs (its own command, or ``command``) with ``port`` published on
  127.0.0.1; the first check is retried until it passes (the server is starting), the others
  must pass at once. A check sends ``method`` (GET) to ``path`` with ``headers`` and a ``json``
  or ``body``, and wants ``status`` (200) and every ``expect`` string in the answer.

``smoke.volume`` mounts one fresh Docker volume at that path in every step, so an earlier step
can make what a later one serves (a model bundle, say); it is removed afterwards. Docker
copies the image's own content and owner of that path into the new volume, so pick a folder
the image's user owns. Every container and the volume are removed whatever happens.
"""

import json
import time

import requests

from mlhub.errors import ImageError


def _fail(spec, step, reason, container=None):
    logs = ""
    if container is not None:
        try:
            logs = container.logs(tail=40).decode("utf-8", "replace")
        except Exception:  # the container may be gone; the reason is what matters
            logs = ""
    raise ImageError(
        f"{spec.name}: smoke test step {step['name']!r} failed: {reason}"
        + (f"\n--- container output (last lines) ---\n{logs}" if logs else ""),
        {"image": spec.name, "step": step["name"]},
    )


def _remove(container):
    try:
        container.remove(force=True)
    except Exception:  # already gone
        pass


def _run_step(client, spec, ref, step, volumes, timeout):
    container = client.containers.run(
        ref, step["run"], environment=step.get("env"), volumes=volumes, detach=True
    )
    try:
        try:
            status = container.wait(timeout=timeout)["StatusCode"]
        except Exception:
            _fail(spec, step, f"did not finish within {timeout} s", container)
        output = container.logs().decode("utf-8", "replace")
        if status != 0:
            _fail(spec, step, f"{step['run']} exited with {status}", container)
        missing = [e for e in step.get("expect", []) if e not in output]
        if missing:
            _fail(spec, step, f"the output lacks {missing}", container)
    finally:
        _remove(container)


def published_port(container, port, timeout=10):
    """The 127.0.0.1 port Docker published for the container's ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        bound = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp")
        if bound:
            return int(bound[0]["HostPort"])
        if container.status == "exited":
            break
        time.sleep(0.1)
    return None


def check(base_url, spec_check):
    """Send one check's request; return ``None`` when it passes, else what was wrong."""
    method = spec_check.get("method", "GET")
    kwargs = {"headers": spec_check.get("headers"), "timeout": 30}
    if "json" in spec_check:
        kwargs["data"] = json.dumps(spec_check["json"])
        kwargs["headers"] = {"Content-Type": "application/json", **(kwargs["headers"] or {})}
    elif "body" in spec_check:
        kwargs["data"] = spec_check["body"].encode()
    try:
        reply = requests.request(method, base_url + spec_check["path"], **kwargs)
    except requests.RequestException as e:
        return f"{method} {spec_check['path']}: no answer ({type(e).__name__})"
    want = spec_check.get("status", 200)
    if reply.status_code != want:
        return (
            f"{method} {spec_check['path']} answered {reply.status_code}, not {want}: "
            + (reply.text[:300])
        )
    missing = [e for e in spec_check.get("expect", []) if e not in reply.text]
    if missing:
        return f"{method} {spec_check['path']}: the answer lacks {missing}: {reply.text[:300]}"
    return None


def _serve_step(client, spec, ref, step, volumes, timeout):
    serve = step["serve"]
    container = client.containers.run(
        ref,
        serve.get("command"),
        environment=step.get("env"),
        volumes=volumes,
        ports={f"{serve['port']}/tcp": ("127.0.0.1", None)},
        detach=True,
    )
    try:
        port = published_port(container, serve["port"])
        if port is None:
            _fail(spec, step, "the container stopped before its port was published", container)
        base = f"http://127.0.0.1:{port}"
        first, *rest = step["checks"]
        deadline = time.monotonic() + timeout
        while (problem := check(base, first)) is not None:
            container.reload()
            if container.status == "exited":
                _fail(spec, step, f"the container exited while starting ({problem})", container)
            if time.monotonic() > deadline:
                _fail(spec, step, f"not ready within {timeout} s: {problem}", container)
            time.sleep(0.5)
        for c in rest:
            problem = check(base, c)
            if problem:
                _fail(spec, step, problem, container)
    finally:
        _remove(container)


def run_smoke(client, spec, ref, *, default_timeout=180, say=print):
    """Run ``spec``'s smoke test against the image ``ref``; ``ImageError`` says what failed."""
    if not spec.smoke:
        raise ImageError(
            f"{spec.name}: declares no smoke test: add a `smoke:` section to "
            f"images/{spec.name}/image.yaml (format: images/README.md)",
            {"image": spec.name},
        )
    volume = None
    volumes = None
    if spec.smoke.get("volume"):
        volume = client.volumes.create()
        volumes = {volume.name: {"bind": spec.smoke["volume"], "mode": "rw"}}
    try:
        for step in spec.smoke["steps"]:
            timeout = step.get("timeout", default_timeout)
            say(f"{spec.name}: smoke test: {step['name']}")
            started = time.monotonic()
            if "run" in step:
                _run_step(client, spec, ref, step, volumes, timeout)
            else:
                _serve_step(client, spec, ref, step, volumes, timeout)
            say(f"{spec.name}: smoke test: {step['name']}: ok ({time.monotonic() - started:.1f} s)")
    finally:
        if volume is not None:
            try:
                volume.remove(force=True)
            except Exception:  # a container still holding it was already force-removed
                pass
