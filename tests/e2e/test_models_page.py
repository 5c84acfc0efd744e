"""The Models page in headless Chromium against a real ``mlhub up``: a user reaches it from the
hub's Services menu (hub OAuth, no token to copy), finds their model, rolls it back, scales it,
mints a key (shown once) and revokes it, reads its log, and pastes the page's snippets, which
must work as pasted. A second user sees only what is shared with them, read-only, and gets a
readable refusal for the rest.
"""

import json
import shutil
import subprocess
import sys

import pytest
import requests
from support.embedded_hub import PUBLISHER_CONFIG, running_hub, wait_for
from support.labpage import SUBMIT
from support.publishing import constant_bundle, predict

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.component]

SERVICE = "mlhub-publisher"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    config = PUBLISHER_CONFIG + "c.PublisherApp.max_workers = 3\n"
    with running_hub(tmp_path_factory.mktemp("models-page"), config, ("alice", "bob")) as hub:
        yield hub


def log_in(page, hub, user):
    page.goto(f"{hub.url}hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", hub.passwords[user])
    page.click(SUBMIT)
    page.wait_for_url("**/hub/**")


def open_models_page(page, hub):
    """From the hub's home page through its Services menu, as a user finds it."""
    page.goto(f"{hub.url}hub/home")
    page.get_by_role("button", name="Services").or_(page.get_by_text("Services")).first.click()
    page.get_by_role("link", name=SERVICE).click()
    page.wait_for_url(f"**/services/{SERVICE}/")
    page.get_by_role("heading", name="Models").wait_for()


def live_version(page):
    return page.locator("#live-version").inner_text()


def test_a_user_finds_rolls_back_scales_and_keys_a_model(hub, browser_page, tmp_path):
    first = hub.client.publish(constant_bundle(tmp_path / "v1", 1.0, name="iris"), "iris")
    second = hub.client.publish(constant_bundle(tmp_path / "v2", 2.0, name="iris"), "iris")
    v1, v2 = first["current_version"], second["current_version"]
    page = browser_page
    log_in(page, hub, "alice")
    open_models_page(page, hub)

    row = page.locator("#models tr[data-model='alice/iris']")
    assert row.locator(".status").inner_text() == "ready"
    assert v2[:19] in row.inner_text()
    row.get_by_role("link", name="iris").click()
    page.get_by_role("heading", name="iris").wait_for()
    assert live_version(page) == v2[:19]
    assert page.locator("#versions tbody tr").count() == 2
    latest = page.locator(f"#versions tr[data-version='{v2}']").inner_text()
    assert "alice" in latest and "sklearn" in latest  # who published it, and what it is
    assert [c.inner_text() for c in page.locator("#signature tbody td:first-child").all()]

    # Roll back to the first version: the page says it started, then shows it live.
    page.locator(f"#versions tr[data-version='{v1}']").get_by_role("button").click()
    assert "Rollback started" in page.locator("#done").inner_text()
    wait_for(lambda: page.reload() and live_version(page) == v1[:19], "the rollback", 60)
    assert predict(hub, "alice", "iris", hub.alice).json()["predictions"] == [1.0]

    # Scale to two replicas with the labelled field.
    page.get_by_label("Replicas (1 to 3)").fill("2")
    page.get_by_role("button", name="Scale").click()
    page.locator("#done").wait_for()
    assert "2 replicas" in page.inner_text("#replicas")

    def scaled():
        live = [i for i in hub.client.get("iris")["instances"] if i["state"] == "live"]
        return live and live[0]["workers"] == 2

    wait_for(scaled, "two replicas serving", 60)

    # A key: shown once, works at once, and the page's snippets work as pasted with it.
    page.get_by_label("Description (who will use it)").fill("nightly job")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key-value").input_value()
    assert key.startswith("mlhk_")
    # serving processes read their access file about once a second
    answer = wait_for(lambda: predict(hub, "alice", "iris", key) or None, "the key to work", 20)
    assert answer.json()["predictions"] == [1.0]
    curl = page.locator("#code-bash").inner_text()
    python = page.locator("#code-python").inner_text()
    assert key in curl and key in python
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout)["predictions"] == [1.0], out  # the bundle's one example row
    out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True)
    assert out.stdout.strip() == "[1.0]", out
    if shutil.which("Rscript"):
        r = page.locator("#code-r").inner_text()
        out = subprocess.run(["Rscript", "-e", r], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "[1] 1", out
    # the key's page was the answer to its POST: once left, the secret is gone
    page.goto(f"{hub.url}services/{SERVICE}/models/alice/iris")
    assert page.locator("#new-key-value").count() == 0
    key_row = page.locator("#keys tbody tr").filter(has_text="nightly job")
    key_row.get_by_role("button", name="Revoke key").click()
    assert "revoked" in page.locator("#done").inner_text()
    wait_for(lambda: predict(hub, "alice", "iris", key).status_code == 401, "the revocation", 20)

    # Try it: the example prefilled, sent as alice; a bad body is kept with the reason.
    page.get_by_role("button", name="Send").click()
    assert page.inner_text("#try-status") == "HTTP 200"
    assert json.loads(page.inner_text("#try-answer"))["predictions"] == [1.0]
    page.get_by_label("Request to /v1/predict").fill('{"instances": [[1.0, "x"]]}')
    page.get_by_role("button", name="Send").click()
    assert page.inner_text("#try-status") == "HTTP 400"
    assert json.loads(page.inner_text("#try-answer"))["code"] == "invalid_input"
    assert page.locator("#try-body").input_value() == '{"instances": [[1.0, "x"]]}'
    page.goto(f"{hub.url}services/{SERVICE}/models/alice/iris")

    # The history: what served when (v1 live again after v2), and alice's changes by name.
    served = page.locator("#served tbody tr").all_inner_texts()
    assert served[0].startswith(f"production\t{v1[:19]}") and served[0].endswith("now (live)")
    assert served[1].startswith(f"production\t{v2[:19]}")
    changes = page.locator("#changes tbody").inner_text()
    for what in ("rollback to", "scale to 2", "(nightly job) created by alice", "revoked by alice"):
        assert what in changes, changes

    # The log and the events are the model's own.
    assert "mlhub:" in page.locator("#log").inner_text()
    assert "rollback" in page.locator("#events").inner_text() or "switched" in page.inner_text(
        "#events"
    )

    # Traffic from the model's own metrics: totals at once, rates once traffic came between
    # two readings (every 5 s).
    page.wait_for_function(
        "document.getElementById('metrics-totals').textContent.includes('prediction requests')"
    )
    before = int(page.inner_text("#metrics-totals").split()[0])
    for _ in range(30):
        predict(hub, "alice", "iris", hub.alice)
    page.wait_for_function(
        "parseFloat(document.getElementById('metrics-rate').textContent) > 0", timeout=20_000
    )
    assert int(page.inner_text("#metrics-totals").split()[0]) >= before + 30
    assert page.locator("#chart-rate polyline").get_attribute("points")
    assert float(page.inner_text("#metrics-p95")) > 0  # milliseconds, from the histogram

    # Light and dark, as the hub's own pages.
    before = page.locator("html").get_attribute("data-bs-theme")
    page.locator("#dark-theme-toggle").click()
    assert page.locator("html").get_attribute("data-bs-theme") != before


def test_another_user_sees_shared_models_read_only_and_a_readable_refusal(
    hub, browser_page, tmp_path
):
    hub.client.publish(constant_bundle(tmp_path / "p", 3.0, name="private"), "private")
    hub.client.publish(constant_bundle(tmp_path / "s", 4.0, name="shared"), "shared")
    page = browser_page
    # alice shares it with bob on its page
    log_in(page, hub, "alice")
    page.goto(f"{hub.url}services/{SERVICE}/models/alice/shared")
    page.get_by_label("Users (separated by commas)").fill("bob")
    page.get_by_role("button", name="Save sharing").click()
    assert "Sharing saved" in page.locator("#done").inner_text()
    assert hub.client.get("shared")["shared_with"] == ["bob"]
    page.context.clear_cookies()
    log_in(page, hub, "bob")
    open_models_page(page, hub)
    listed = page.locator("#models tbody tr").all_inner_texts()
    assert any("shared" in row and "alice" in row for row in listed)
    assert not any("private" in row for row in listed)

    page.get_by_role("link", name="shared").click()
    page.get_by_role("heading", name="shared").wait_for()
    # read-only: no rollback, scale, keys or sharing; only trying it (a call, which bob may)
    assert page.locator("form").count() == 1 and page.locator("form#try").count() == 1
    assert page.locator("#log").count() == 0
    page.get_by_role("button", name="Send").click()
    assert page.inner_text("#try-status") == "HTTP 200"
    assert json.loads(page.inner_text("#try-answer"))["predictions"] == [4.0]

    reply = page.goto(f"{hub.url}services/{SERVICE}/models/alice/private")
    assert reply.status == 403
    message = page.locator("#error-message").inner_text()
    assert "may not read models of 'alice'" in message
    assert "Traceback" not in page.content()

    # A form posted without the page's xsrf token changes nothing.
    refused = page.request.post(
        f"{hub.url}services/{SERVICE}/models/alice/shared/scale", form={"replicas": "3"}
    )
    assert refused.status in (403, 302)
    assert (
        requests.get(
            f"{hub.url}services/{SERVICE}/api/models/alice/shared",
            headers={"Authorization": f"token {hub.alice}"},
            timeout=30,
        ).json()["replicas"]
        == 1
    )


def test_the_page_shows_the_inference_log_and_drift(hub, browser_page, tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlhub.bundle import save_bundle

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sl", "sw", "pl", "pw"]
    model = LogisticRegression(max_iter=500).fit(X, y)
    save_bundle(model, tmp_path / "b", name="watched", example=X.head(), validate=X)
    hub.client.publish(tmp_path / "b", "watched", inference_log=0.5)
    hub.client.publish(tmp_path / "b", "watched", inference_log=True)  # the same version, all
    shifted = X.assign(pl=X.pl + 3.0)
    for start in range(0, 150, 30):
        rows = shifted.iloc[start : start + 30].to_dict(orient="records")
        assert predict(hub, "alice", "watched", hub.alice, rows).ok
    assert predict(hub, "alice", "watched", hub.alice, [{"sl": "tall"}]).status_code == 400
    wait_for(
        lambda: len(hub.client.inference_log("watched")) >= 151, "the rows in the log", timeout=60
    )
    page = browser_page
    log_in(page, hub, "alice")
    page.goto(f"{hub.url}services/{SERVICE}/models/alice/watched")
    page.get_by_role("heading", name="Inference log").wait_for()
    assert "Keeps 100% of the requests" in page.inner_text("#inference-setting")
    rows = page.locator("#inferences tbody tr")
    assert rows.count() == 20
    first = rows.first.inner_text()  # the newest: the refusal
    assert "400" in first and "sl" in first
    assert "200" in rows.nth(1).inner_text()
    drifted = page.locator("#drift tr[data-feature='pl']").inner_text()
    assert drifted.split()[-1] == "yes", drifted
    for feature in ("sl", "sw", "pw"):
        assert page.locator(f"#drift tr[data-feature='{feature}']").inner_text().split()[-1] == "no"


def test_the_owner_moves_an_alias_and_runs_a_canary_from_the_page(hub, browser_page, tmp_path):
    first = hub.client.publish(constant_bundle(tmp_path / "v1", 1.0, name="rel"), "rel")
    staged = hub.client.publish(
        constant_bundle(tmp_path / "v2", 2.0, name="rel"), "rel", alias="staging"
    )
    v1 = first["current_version"]
    (v2,) = [a["version"] for a in staged["aliases"] if a["name"] == "staging"]
    page = browser_page
    log_in(page, hub, "alice")
    page.goto(f"{hub.url}services/{SERVICE}/models/alice/rel")
    page.get_by_role("heading", name="Aliases").wait_for()
    assert v2[:19] in page.inner_text("#aliases tr[data-alias='staging']")

    # a new alias "qa" at the first version, from the form
    page.fill("#alias-name", "qa")
    page.select_option("#alias-version", v1)
    page.get_by_role("button", name="Point it there").click()
    page.wait_for_selector("#done")
    wait_for(lambda: predict(hub, "alice", "rel@qa", hub.alice).ok, "the qa alias serving")
    assert predict(hub, "alice", "rel@qa", hub.alice).json()["predictions"] == [1.0]
    page.reload()
    assert v1[:19] in page.inner_text("#aliases tr[data-alias='qa']")
    page.get_by_role("button", name="Delete alias qa").click()
    page.wait_for_selector("#done")
    assert page.locator("#aliases tr[data-alias='qa']").count() == 0

    # a canary of the staged version at 30%, then aborted
    assert "No canary" in page.inner_text("#no-canary")
    page.select_option("#canary-version", v2)
    page.fill("#canary-percent", "30")
    page.get_by_role("button", name="Start canary").click()
    page.wait_for_selector("#done")
    wait_for(lambda: hub.client.get("rel")["canary"]["version"] == v2, "the canary to split")
    answers = [predict(hub, "alice", "rel", hub.alice).json()["predictions"][0] for _ in range(60)]
    assert set(answers) == {1.0, 2.0}
    page.reload()
    assert "30%" in page.inner_text("#canary-status")
    stats = page.locator("#canary-stats tr[data-arm='canary']").inner_text().split()
    assert stats[0] == "canary" and int(stats[1]) > 0
    page.get_by_role("button", name="Abort").click()
    page.wait_for_selector("#done")
    assert "aborted" in page.inner_text("#done")
    assert page.locator("#no-canary").count() == 1
    assert {
        predict(hub, "alice", "rel", hub.alice).json()["predictions"][0] for _ in range(20)
    } == {1.0}


def test_the_owner_starts_reads_and_stops_a_shadow_from_the_page(hub, browser_page, tmp_path):
    hub.client.publish(constant_bundle(tmp_path / "v1", 1.0, name="mirror"), "mirror")
    staged = hub.client.publish(
        constant_bundle(tmp_path / "v2", 3.0, name="mirror"), "mirror", alias="staging"
    )
    (v2,) = [a["version"] for a in staged["aliases"] if a["name"] == "staging"]
    page = browser_page
    log_in(page, hub, "alice")
    page.goto(f"{hub.url}services/{SERVICE}/models/alice/mirror")
    page.get_by_role("heading", name="Shadow").wait_for()
    page.select_option("#shadow-version", v2)
    page.fill("#shadow-percent", "100")
    page.get_by_role("button", name="Start shadow").click()
    page.wait_for_selector("#done")
    wait_for(lambda: hub.client.get("mirror")["shadow"]["version"] == v2, "the shadow")
    wait_for(
        lambda: hub.client.events("mirror")[-1]["step"] == "done", "production restarted with it"
    )
    for _ in range(5):  # callers get production's answer only
        assert predict(hub, "alice", "mirror", hub.alice).json()["predictions"] == [1.0]
    wait_for(
        lambda: hub.client.shadow("mirror")["summary"]["compared"] >= 5, "the requests compared"
    )
    page.reload()
    summary = page.inner_text("#shadow-summary")
    assert "Compared rows: 5" in summary and "agreeing: 0 (0.0%)" in summary, summary
    assert page.locator("#shadow-differ tbody tr").count() == 5
    assert "3" in page.locator("#shadow-differ tbody tr").first.inner_text()
    page.get_by_role("button", name="Stop the shadow").click()
    page.wait_for_selector("#done")
    assert page.locator("#no-shadow").count() == 1
    assert hub.client.get("mirror")["shadow"] is None


def test_the_owner_sees_a_model_sleep_and_keeps_it_warm_from_the_page(hub, browser_page, tmp_path):
    """A model told to sleep after 1 s shows ``sleeping`` in the list and on its page; the
    owner's Try it wakes it with the model's answer, and the Sleep form keeps it warm."""
    hub.client.publish(constant_bundle(tmp_path / "dozy", 8.0, "dozy"), "dozy")
    hub.client.configure("dozy", sleep_after=1)
    wait_for(lambda: hub.client.get("dozy")["status"] == "sleeping", "dozy to sleep", timeout=60)
    page = browser_page
    log_in(page, hub, "alice")
    open_models_page(page, hub)
    row = page.locator("tr", has=page.get_by_role("link", name="dozy", exact=True))
    assert "sleeping" in row.inner_text()
    page.get_by_role("link", name="dozy", exact=True).click()
    page.get_by_role("heading", name="Sleep when idle").wait_for()
    assert "After 1 second without a request" in page.inner_text("#sleep-setting")
    assert page.locator("#asleep-now").is_visible()

    page.fill("#try-body", '{"instances": [[0.0, 0.0]]}')
    page.get_by_role("button", name="Send").click()
    page.locator("#try-status").wait_for()
    assert page.inner_text("#try-status") == "HTTP 200"
    assert "8.0" in page.inner_text("#try-answer")

    page.select_option("#sleep-mode", "never")
    page.locator("#sleep").get_by_role("button", name="Save").click()
    page.locator("#done").wait_for()
    assert "Never: it stays warm" in page.inner_text("#sleep-setting")
    assert hub.client.get("dozy")["sleep_after"] == 0
