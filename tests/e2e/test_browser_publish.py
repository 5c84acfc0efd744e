"""End to end, as a data scientist does it, in headless Chromium against a real `mlhub up`.

Log in through the hub's login form, pick a profile and size on the spawn page, open a notebook in
JupyterLab, run cells that train a scikit-learn pipeline and show the "Publish model" panel, type a
name, click Publish, read the endpoint and key the panel shows, and call the endpoint: its
predictions must equal the same pipeline's in-process predictions.
"""

import json

import pytest
import requests
from labpage import run_all_cells, wait_for_kernel
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.component]

TRAIN = """\
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

iris = load_iris(as_frame=True)
X, y = iris.data, iris.target
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
print("trained", model.score(X, y))
"""

PANEL = """\
import mlhub
mlhub.publish_panel(example=X.head(3))
"""


def _notebook(cells):
    return {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": src,
                "outputs": [],
                "execution_count": None,
            }
            for src in cells
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_login_spawn_notebook_publish_predict(platform, browser_page):
    user, password = platform.add_user("ada")
    workspace = platform.workspace(user)
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "defects.ipynb").write_text(json.dumps(_notebook([TRAIN, PANEL])))

    page = browser_page
    page.goto(f"{platform.url}hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")

    # The spawn page offers the profiles; choose "Python (standard)", size "small".
    page.wait_for_url("**/hub/spawn**")
    page.check("input[name=profile][value=python]")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"**/user/{user}/**", timeout=90_000)

    # The user server runs the mlhub server extension, and it reaches the publisher.
    status = page.request.get(f"{platform.url}user/{user}/mlhub/api/status")
    assert status.ok, status.text()
    assert status.json()["user"] == user
    assert status.json()["publisher"]["reachable"] is True

    page.goto(f"{platform.url}user/{user}/lab/tree/defects.ipynb")
    # The notebook names the profile's kernel (python3), so it starts with no "Select Kernel".
    wait_for_kernel(page)
    run_all_cells(page)

    page.wait_for_selector(".mlhub-publish-button", timeout=90_000)
    name_input = page.locator(".mlhub-model-name input")
    name_input.fill("iris-e2e")
    page.click(".mlhub-publish-button")
    endpoint = page.wait_for_selector(".mlhub-endpoint :text('/models/')", timeout=120_000)
    assert f"/models/{user}/iris-e2e/" in endpoint.inner_text()
    snippet = page.inner_text(".mlhub-snippets")
    key = next(tok for tok in snippet.replace('"', " ").split() if tok.startswith("mlhk_"))

    iris = load_iris(as_frame=True)
    X, y = iris.data, iris.target
    expected = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    rows = X.sample(20, random_state=1)
    url = f"{platform.url}models/{user}/iris-e2e/v1/predict"
    resp = requests.post(
        url,
        json={"instances": rows.to_dict(orient="records")},
        headers={"Authorization": f"token {key}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == expected.predict(rows).tolist()

    # Without the key the same endpoint refuses.
    anon = requests.post(url, json={"instances": rows.to_dict(orient="records")}, timeout=30)
    assert anon.status_code == 401
