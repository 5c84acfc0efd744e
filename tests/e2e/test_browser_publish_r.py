"""End to end in R, as a data scientist does it, in headless Chromium against a real `mlhub up`.

Log in, pick the "R" profile on the spawn page, open an R notebook (IRkernel) in JupyterLab and
run cells that fit a randomForest on a frame with a factor column, save R's own predict() for a
few rows, and publish with one call, ``mlhub::publish(model, name = ..., example = head(df))``.
The notebook shows the progress, the endpoint, the API key and a curl snippet; a Python client
calls the endpoint with that key and must get exactly R's predictions, and a wrong factor level
is refused with the levels.
"""

import json
import re

import pytest
import requests
from support.labpage import log_in, run_all_cells, spawn, wait_for_kernel, write_notebook

from mlhub import rlang

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.component]

FIT = """\
library(randomForest)
set.seed(42)
n <- 200
df <- data.frame(temp = rnorm(n, 20, 5), pressure = runif(n, 1, 3),
                 line = factor(sample(c("north", "south", "east"), n, TRUE)))
shift <- c(north = 0, south = 4, east = 9)
df$defects <- 0.3 * df$temp + 2 * df$pressure + shift[as.character(df$line)]
model <- randomForest(defects ~ temp + pressure + line, data = df, ntree = 50)
rows <- df[c(3, 50, 120, 199), c("temp", "pressure", "line")]
jsonlite::write_json(list(rows = rows, predictions = unname(predict(model, newdata = rows))),
                     "expected.json", digits = NA, dataframe = "rows")
"""

PUBLISH = """\
took <- system.time(result <- mlhub::publish(model, name = "defect-r", example = head(df[, 1:3])))
cat(sprintf("publish took %.2f s\\n", took[["elapsed"]]))
"""


def test_r_notebook_publishes_and_predictions_equal_r(platform, browser_page):
    if rlang.rscript() is None:
        pytest.fail(f"R is not installed: {rlang.INSTALL_HINT} (scripts/system-deps does it)")
    user, password = platform.add_user("rosa")
    workspace = platform.workspace(user)
    write_notebook(workspace / "defects-r.ipynb", [FIT, PUBLISH], "ir", "R", "R")

    page = browser_page
    log_in(page, platform.url, user, password)
    spawn(page, user, "r", timeout=120_000)

    page.goto(f"{platform.url}user/{user}/lab/tree/defects-r.ipynb")
    assert wait_for_kernel(page, timeout=120_000).startswith("R |")
    run_all_cells(page)
    page.wait_for_selector(".jp-OutputArea-output:has-text('publish took')", timeout=180_000)
    output = page.inner_text(".jp-Notebook")
    for step in ("bundle", "upload", "start", "ready"):
        assert re.search(rf"\] {step}\s", output), output
    assert f"/models/{user}/defect-r/" in output and "curl -sS -X POST" in output
    key = re.search(r"mlhk_[A-Za-z0-9_-]+", output).group(0)
    took = re.search(r"publish took ([0-9.]+) s", output).group(1)
    print(f"R publish, run cell -> ready: {took} s")

    expected = json.loads((workspace / "expected.json").read_text())
    url = f"{platform.url}models/{user}/defect-r/v1/predict"
    headers = {"Authorization": f"Bearer {key}"}
    resp = requests.post(url, json={"instances": expected["rows"]}, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == pytest.approx(expected["predictions"], rel=1e-12)

    wrong = dict(expected["rows"][0], line="west")
    resp = requests.post(url, json={"instances": [wrong]}, headers=headers, timeout=30)
    assert resp.status_code == 400
    assert resp.json()["detail"]["column"] == "line"
    assert "'east', 'north', 'south'" in resp.json()["error"]
    assert requests.post(url, json={"instances": expected["rows"]}, timeout=30).status_code == 401
