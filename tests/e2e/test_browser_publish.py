"""End to end, as a data scientist does it, in headless Chromium against a real `mlhub up`.

Log in through the hub's login form, pick a profile and size on the spawn page, open a notebook in
JupyterLab, run cells that train a scikit-learn pipeline and show the "Publish model" panel, type a
name, click Publish, read the endpoint and key the panel shows, and call the endpoint: its
predictions must equal the same pipeline's in-process predictions.
"""

import json
import subprocess
import sys

import pytest
import requests
from support.browser_publish import PANEL, TRAIN, expected_predictions, publish_with_the_panel
from support.labpage import log_in, spawn, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.component]


def test_login_spawn_notebook_publish_predict(platform, browser_page):
    user, password = platform.add_user("ada")
    notebook = platform.workspace(user) / "defects.ipynb"
    write_notebook(notebook, [TRAIN, PANEL], "python3", "Python 3", "python")

    page = browser_page
    log_in(page, platform.url, user, password)
    # The spawn page offers the profiles; choose "Python (standard)", size "small".
    spawn(page, user, "python", timeout=90_000)

    # The user server runs the mlhub server extension, and it reaches the publisher.
    status = page.request.get(f"{platform.url}user/{user}/mlhub/api/status")
    assert status.ok, status.text()
    assert status.json()["user"] == user
    assert status.json()["publisher"]["reachable"] is True

    endpoint, key = publish_with_the_panel(
        page, f"{platform.url}user/{user}/lab/tree/defects.ipynb", "iris-e2e"
    )
    assert f"/models/{user}/iris-e2e/" in endpoint
    # beside the widget, plain HTML the saved notebook keeps (without the key)
    saved = page.inner_text(".mlhub-published")
    assert f"/models/{user}/iris-e2e/" in saved and key not in saved
    rows, expected = expected_predictions()
    url = f"{platform.url}models/{user}/iris-e2e/v1/predict"
    resp = requests.post(
        url,
        json={"instances": rows.to_dict(orient="records")},
        headers={"Authorization": f"token {key}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == expected

    # the panel's snippets work as pasted (they send the bundle's example rows)
    curl = page.inner_text(".mlhub-snippets pre.mlhub-curl")
    python = page.inner_text(".mlhub-snippets pre.mlhub-python")
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
    assert len(json.loads(out.stdout)["predictions"]) == 2, out
    out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True)
    assert out.returncode == 0 and len(json.loads(out.stdout)) == 2, out

    # Without the key the same endpoint refuses.
    anon = requests.post(url, json={"instances": rows.to_dict(orient="records")}, timeout=30)
    assert anon.status_code == 401
