"""End to end, as a data scientist does it, in headless Chromium against a real `mlhub up`.

Log in through the hub's login form, pick a profile and size on the spawn page, open a notebook in
JupyterLab, run cells that train a scikit-learn pipeline and show the "Publish model" panel, type a
name, click Publish, read the endpoint and key the panel shows, and call the endpoint: its
predictions must equal the same pipeline's in-process predictions.
"""

import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from support.labpage import log_in, run_all_cells, spawn, wait_for_kernel, write_notebook

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

    # Without the key the same endpoint refuses.
    anon = requests.post(url, json={"instances": rows.to_dict(orient="records")}, timeout=30)
    assert anon.status_code == 401


def publish_with_the_panel(page, notebook_url, name):
    """Open the notebook at ``notebook_url`` (cells TRAIN and PANEL), run it, type ``name`` in
    the Publish panel and click Publish; return the endpoint the panel shows and the API key
    of its snippets."""
    page.goto(notebook_url)
    # The notebook names the profile's kernel (python3), so it starts with no "Select Kernel".
    wait_for_kernel(page)
    run_all_cells(page)
    page.wait_for_selector(".mlhub-publish-button", timeout=90_000)
    page.locator(".mlhub-model-name input").fill(name)
    page.click(".mlhub-publish-button")
    endpoint = page.wait_for_selector(".mlhub-endpoint :text('/models/')", timeout=180_000)
    snippet = page.inner_text(".mlhub-snippets")
    key = next(tok for tok in snippet.replace('"', " ").split() if tok.startswith("mlhk_"))
    return endpoint.inner_text(), key


def expected_predictions():
    """20 rows and what TRAIN's pipeline, trained here the same way, predicts for them."""
    iris = load_iris(as_frame=True)
    X, y = iris.data, iris.target
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    rows = X.sample(20, random_state=1)
    return rows, model.predict(rows).tolist()
