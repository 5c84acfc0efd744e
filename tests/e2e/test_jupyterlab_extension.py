"""mlhub's JupyterLab extension in headless Chromium against a real ``mlhub up``, in the Python
and the R profile: a user who has never read the docs finds "Publish model" in the notebook's
toolbar (and in the File menu and the command palette), publishes from it, and finds the model in
the "Models" side panel, whose link opens the model's Models page. In Python the button opens
the ipywidgets panel; in R (no widgets) a dialog chooses the model, name and example and runs
``mlhub::publish`` in a cell. The panel's saved output still shows the endpoint after the
kernel is gone.
"""

import json
import re

import pytest
import requests
from support.browser_publish import TRAIN
from support.embedded_hub import wait_for
from support.labpage import log_in, run_all_cells, spawn, wait_for_kernel, write_notebook

from mlhub import rlang

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.component]

FIT_R = """\
rf.fit <- lm(dist ~ speed, data = cars)
speeds <- cars[, "speed", drop = FALSE]
"""


def toolbar_publish(page):
    """The visible notebook's "Publish model" toolbar button."""
    return page.locator(".jp-NotebookPanel:visible .mlhub-publish-toolbar-button")


def open_models_panel(page, name):
    """Open the left "Models" panel; return the list item of model ``name`` once it is ready."""
    page.click("li.lm-TabBar-tab[data-id='mlhub-models']")
    item = page.locator(f"#mlhub-models .mlhub-model[data-name='{name}']")
    item.locator(".mlhub-model-status:text-is('ready')").wait_for(timeout=30_000)
    return item


def follow_to_the_models_page(page, item, user, name):
    """The panel's link opens the model's page (hub OAuth: the logged-in browser gets in)."""
    href = item.locator("a.mlhub-model-link").get_attribute("href")
    assert href == f"/services/mlhub-publisher/models/{user}/{name}"
    with page.context.expect_page() as opened:
        item.locator("a.mlhub-model-link").click()
    model_page = opened.value
    model_page.get_by_role("heading", name=name).wait_for(timeout=60_000)
    assert "ready" in model_page.inner_text("body")
    model_page.close()


def saved_html(notebook, text):
    """The saved notebook's HTML output holding ``text``, or None (not saved yet)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except ValueError:  # being written
        return None
    for cell in cells:
        for out in cell.get("outputs", []):
            html = "".join(out.get("data", {}).get("text/html", ""))
            if text in html:
                return html
    return None


def test_python_publish_button_menu_palette_and_models_panel(platform, browser_page):
    user, password = platform.add_user("lin")
    notebook = platform.workspace(user) / "train.ipynb"
    write_notebook(notebook, [TRAIN], "python3", "Python 3", "python")
    page = browser_page
    log_in(page, platform.url, user, password)
    spawn(page, user, "python", timeout=90_000)
    page.goto(f"{platform.url}user/{user}/lab/tree/train.ipynb?reset")
    wait_for_kernel(page)
    run_all_cells(page)
    page.locator(".jp-OutputArea-output:has-text('trained')").wait_for(timeout=60_000)

    # The File menu and the command palette offer it too.
    page.click(".lm-MenuBar-itemLabel:text-is('File')")
    page.locator(".lm-Menu-itemLabel:text-is('Publish Model…')").wait_for()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type("Publish Model")
    page.locator(".lm-CommandPalette-item:has-text('Publish Model…')").wait_for()
    page.keyboard.press("Escape")

    # The toolbar button puts the panel in a cell under the training cell and runs it.
    toolbar_publish(page).click()
    page.wait_for_selector(".mlhub-publish-button", timeout=60_000)
    assert "mlhub.publish_panel()" in page.inner_text(".jp-Notebook")
    page.locator(".mlhub-model-name input").fill("lab-iris")
    page.click(".mlhub-publish-button")
    endpoint = page.wait_for_selector(".mlhub-endpoint :text('/models/')", timeout=180_000)
    assert f"/models/{user}/lab-iris/" in endpoint.inner_text()

    item = open_models_panel(page, "lab-iris")
    assert re.search(r"sha256:[0-9a-f]{12} · \d replicas?$", item.inner_text()), item.inner_text()
    follow_to_the_models_page(page, item, user, "lab-iris")

    # Saved, closed, kernel gone: the notebook still shows where the model is served.
    page.locator(".jp-NotebookPanel:visible .jp-Cell").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    saved = wait_for(lambda: saved_html(notebook, f"/models/{user}/lab-iris/"), "the save", 30)
    assert not re.search(r"mlhk_[A-Za-z0-9_-]{8}", saved)  # never the key, only how to mint one
    page.click(".lm-MenuBar-itemLabel:text-is('Kernel')")
    page.click(".lm-Menu-itemLabel:text-is('Shut Down Kernel')")
    page.locator(".jp-StatusBar-TextItem:has-text('No Kernel')").wait_for(timeout=30_000)
    page.goto(f"{platform.url}user/{user}/lab/tree/train.ipynb?reset")
    shown = page.locator(".mlhub-published").first
    shown.wait_for(timeout=60_000)
    assert f"/models/{user}/lab-iris/" in shown.inner_text()


def test_r_publish_dialog_runs_mlhub_publish_in_a_cell(platform, browser_page):
    if rlang.rscript() is None:
        pytest.fail(f"R is not installed: {rlang.INSTALL_HINT} (scripts/system-deps does it)")
    user, password = platform.add_user("rhea")
    write_notebook(platform.workspace(user) / "fit.ipynb", [FIT_R], "ir", "R", "R")
    page = browser_page
    log_in(page, platform.url, user, password)
    spawn(page, user, "r", timeout=120_000)
    page.goto(f"{platform.url}user/{user}/lab/tree/fit.ipynb?reset")
    assert wait_for_kernel(page, timeout=120_000).startswith("R |")

    # Before anything is fitted there is nothing to publish, and the dialog says so.
    toolbar_publish(page).click()
    assert "fit a model" in page.locator(".jp-Dialog").inner_text()
    page.locator(".jp-Dialog .jp-mod-accept, .jp-Dialog .jp-mod-reject").first.click()

    run_all_cells(page)
    page.locator(".jp-Notebook .jp-InputArea-prompt:text-is('[1]:')").wait_for(timeout=60_000)
    toolbar_publish(page).click()
    dialog = page.locator(".jp-Dialog .mlhub-publish-form")
    dialog.wait_for()
    assert dialog.get_by_label("Model").input_value() == "rf.fit"
    assert dialog.get_by_label("Example inputs").input_value() == "speeds"
    name = dialog.get_by_label("Name")
    assert name.input_value() == "rf-fit"  # suggested from the variable, as a valid name
    name.fill("Bad_Name")
    page.locator(".mlhub-name-message:has-text('is not valid')").wait_for()
    assert page.locator(".jp-Dialog .jp-mod-accept").is_disabled()
    name.fill("stopping")
    page.locator(".mlhub-name-message:has-text('a new model')").wait_for()
    page.locator(".jp-Dialog .jp-mod-accept").click()

    page.locator(".jp-OutputArea-output:has-text('curl -sS -X POST')").wait_for(timeout=180_000)
    text = page.inner_text(".jp-Notebook")
    assert 'mlhub::publish(rf.fit, name = "stopping", example = head(speeds, 5))' in text
    key = re.search(r"mlhk_[A-Za-z0-9_-]+", text).group(0)
    url = f"{platform.url}models/{user}/stopping/v1/predict"
    resp = requests.post(
        url,
        json={"instances": [{"speed": 10}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == pytest.approx([-17.5791 + 3.9324 * 10], rel=1e-3)

    item = open_models_panel(page, "stopping")
    follow_to_the_models_page(page, item, user, "stopping")
