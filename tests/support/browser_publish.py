"""What a user does in the notebook to publish from the panel, in the browser: the training cell,
the panel cell, the clicks; shared by the browser tests of both modes."""

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from support.labpage import run_all_cells, wait_for_kernel

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
