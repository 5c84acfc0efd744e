"""Run one Helm action with helm-sdkpy; JSON request on stdin, JSON answer on stdout.

Runs under the Python 3.12 venv of ``scripts/helm-venv`` (helm-sdkpy needs 3.12; the project's
venv is 3.11), so the tests call it as a subprocess through ``helmtool.Helm``.

Request: ``{"action": "lint"|"install"|"upgrade"|"uninstall"|"status", "namespace": ...,
"kubeconfig": ..., "chart": ..., "release": ..., "values": {...}, "wait": bool,
"timeout": seconds}``. Answer: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error":
"<type>: <message>"}``.
"""

import asyncio
import json
import sys

import helm_sdkpy as helm


async def run(request):
    config = helm.Configuration(
        namespace=request.get("namespace", "default"), kubeconfig=request.get("kubeconfig")
    )
    action = request["action"]
    wait = request.get("wait", True)
    timeout = request.get("timeout", 300)
    if action == "lint":
        return await helm.Lint(config).run(request["chart"])
    if action == "install":
        return await helm.Install(config).run(
            request["release"],
            request["chart"],
            values=request.get("values"),
            create_namespace=True,
            wait=wait,
            timeout=timeout,
            # Helm checks every object against the API server's OpenAPI schema first
            disable_openapi_validation=False,
        )
    if action == "upgrade":
        return await helm.Upgrade(config).run(
            request["release"],
            request["chart"],
            values=request.get("values"),
            wait=wait,
            timeout=timeout,
        )
    if action == "uninstall":
        return await helm.Uninstall(config).run(request["release"], wait=wait, timeout=timeout)
    if action == "status":
        return await helm.Status(config).run(request["release"])
    raise ValueError(f"unknown action {action!r}")


def main():
    request = json.load(sys.stdin)
    try:
        answer = {"ok": True, "result": asyncio.run(run(request))}
    except helm.HelmError as e:
        answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
