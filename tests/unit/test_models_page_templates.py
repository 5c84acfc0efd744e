"""The Models page's templates rendered on literal data (no hub: the pages themselves run in
tests/e2e/test_models_page.py): each renders, escapes what users typed, and shows the forms only
to those who may use them."""

from types import SimpleNamespace

import pytest

from mlhub.publisher.pages import newest, page_templates
from mlhub.snippets import all_snippets

V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
VIEW = {
    "owner": "alice",
    "name": "iris",
    "status": "ready",
    "current_version": V2,
    "replicas": 2,
    "url": "http://hub/models/alice/iris/",
    "predict_url": "http://hub/models/alice/iris/v1/predict",
    "updated": "2026-12-07T10:00:00Z",
    "shared_with": ["bob"],
    "shared_groups": [],
    "inference_log": 0.5,
    "sleep_after": 900,
    "canary": None,
    "shadow": None,
    "aliases": [
        {
            "name": "production",
            "version": V2,
            "since": "2026-12-07T09:01:00Z",
            "url": "http://hub/models/alice/iris/",
        },
        {
            "name": "staging",
            "version": V1,
            "since": "2026-12-07T09:30:00Z",
            "url": "http://hub/models/alice/iris@staging/",
        },
    ],
    "versions": [
        {
            "id": v,
            "created": "2026-12-07T09:00:00Z",
            "live_since": "2026-12-07T09:01:00Z" if v == V2 else None,
            "flavor": "sklearn",
            "runtime": "python",
            "size": 2048,
            "published_by": "alice",
            "requirements": ["scikit-learn==1.9.1", "numpy==2.3.5"],
            "signature": {"kind": "dataframe", "inputs": [{"name": "temp", "type": "double"}]},
            "example": [{"temp": 1.5}],
        }
        for v in (V2, V1)
    ],
}
FRAME = {"prefix": "/services/p/", "hub_static": "/hub/static/", "hub_url": "/hub/"}


def render(template, **values):
    return page_templates().get_template(template).render(**FRAME, **values)


HISTORY = {
    "served": [
        {
            "alias": "production",
            "version": V2,
            "since": "2026-12-01T10:00:00Z",
            "until": "2026-12-02T10:00:00Z",
        },
        {"alias": "staging", "version": V2, "since": "2026-12-03T10:00:00Z", "until": None},
    ],
    "changes": [
        {
            "time": "2026-12-01T09:59:59Z",
            "actor": "<b>alice</b>",
            "step": "received",
            "version": V2,
            "level": "info",
            "message": "received 10 bytes from alice",
        },
        {
            "time": "2026-12-02T00:00:00Z",
            "actor": None,
            "step": "failed",
            "version": V2,
            "level": "error",
            "message": "interrupted by a publisher restart",
        },
    ],
}


def model_page(manage, **extra):
    values = {
        "user": {"name": "alice"},
        "model": VIEW,
        "live": VIEW["versions"][0],
        "manage": manage,
        "keys": [{"id": "k1", "description": "<script>x</script>", "created": "2026"}],
        "new_key": None,
        "events": [{"time": "t", "version": V2, "step": "done", "level": "info", "message": "ok"}],
        "history": newest(HISTORY, 50),
        "log": "--- mlhub: starting",
        "done": None,
        "snippets": all_snippets(VIEW["predict_url"], "iris", [{"temp": 1.5}]),
        "max_workers": 8,
        "page_url": "/services/p/models/alice/iris",
        "xsrf": "tok",
        "tried": None,
        "try_body": '{"instances": [{"temp": 1.5}]}',
        "inferences": [],
        "drift": None,
        "canary": None,
        "shadow": None,
    }
    return render("model.html", **{**values, **extra})


def test_the_owner_gets_every_form_with_the_xsrf_token():
    html = model_page(True)
    for action in ("rollback", "alias", "unalias", "scale", "keys", "revoke", "share", "sleep"):
        assert f'action="/services/p/models/alice/iris/{action}"' in html
    # one rollback (V1), alias move, alias delete (staging), canary start, shadow start, scale,
    # key create, key revoke, sharing, sleep, inference log, try it
    assert html.count('name="_xsrf" value="tok"') == 12
    assert 'id="share-users" name="users"\n                 value="bob"' in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x</script>" not in html
    assert 'href="/hub/static/css/style.min.css"' in html
    assert '<label class="form-label" for="replicas-input">Replicas (1 to 8)</label>' in html


def test_a_sleeping_model_says_so_and_when_it_sleeps():
    html = model_page(True, model={**VIEW, "status": "sleeping", "sleep_after": 5400})
    assert ">sleeping</span>" in html and "the next request wakes it" in html
    assert "After 1 hour 30 minutes without a request" in html
    assert 'id="asleep-now"' in html
    minutes = 'id="sleep-minutes" name="minutes"\n                 min="0" step="any" value="90"'
    assert minutes in html
    warm = model_page(True, model={**VIEW, "sleep_after": 0})
    assert "Never: it stays warm" in warm and 'id="asleep-now"' not in warm
    assert '<option value="never" selected>' in warm


def test_a_reader_gets_no_forms_and_no_log():
    html = model_page(False, keys=[], log="")
    assert html.count("<form") == 1 and 'id="try"' in html  # trying it is a call
    assert 'id="log"' not in html
    assert "curl -sS -X POST" in html  # the snippets are for readers too


def test_a_new_key_is_shown_in_its_snippets():
    key = {"id": "k2", "key": "mlhk_secret", "description": "job"}
    html = model_page(
        True, new_key=key, snippets=all_snippets(VIEW["predict_url"], "iris", [], "mlhk_secret")
    )
    assert 'value="mlhk_secret"' in html and "Bearer mlhk_secret" in html


@pytest.mark.parametrize("admin", [False, True])
def test_the_list_shows_owners_only_when_others_models_are_in_it(admin):
    caller = SimpleNamespace(name="alice", is_admin=admin)
    html = render(
        "models.html",
        user={"name": "alice"},
        caller=caller,
        models=[VIEW],
        page_url=lambda m: f"/services/p/models/{m['owner']}/{m['name']}",
    )
    assert '<a href="/services/p/models/alice/iris">iris</a>' in html
    assert ('<th scope="col">Owner</th>' in html) is admin
    empty = render("models.html", user={"name": "bob"}, caller=caller, models=[], page_url=str)
    assert "No published models yet" in empty


def test_an_error_page_says_what_happened():
    html = render("error.html", user=None, code=403, message="'bob' may not read <models>")
    assert "Not allowed" in html and "&#39;bob&#39; may not read &lt;models&gt;" in html


def test_try_it_shows_the_request_and_the_models_answer():
    tried = {"body": "{bad", "status": 400, "answer": "not sent: <json>"}
    html = model_page(True, tried=tried, try_body="{bad")
    assert '<textarea class="form-control font-monospace mb-2" id="try-body" name="body"' in html
    assert ">{bad</textarea>" in html and "HTTP 400" in html and "not sent: &lt;json&gt;" in html


def test_versions_say_who_published_them_and_with_what():
    html = model_page(True)
    assert "<td>alice</td>" in html
    assert "<code>scikit-learn==1.9.1</code>" in html and "<summary>2</summary>" in html


def test_aliases_show_their_versions_and_urls_and_only_others_than_production_are_deleted():
    html = model_page(True)
    table = html.split('id="aliases"')[1].split("</table>")[0]
    assert '<a href="http://hub/models/alice/iris@staging/">' in table
    assert f'<code title="{V1}">{V1[:19]}</code>' in table.split('data-alias="staging"')[1]
    assert 'aria-label="Delete alias staging"' in table
    assert "Delete alias production" not in table
    canary = {"name": "canary", "version": V1, "since": None, "url": "http://hub/x@canary/"}
    with_canary = model_page(True, model={**VIEW, "aliases": [*VIEW["aliases"], canary]})
    # a canary ends with its own buttons (promote, abort), not as an alias
    assert "Delete alias canary" not in with_canary and 'data-alias="canary"' in with_canary
    form = html.split('id="alias-form"')[1].split("</form>")[0]
    assert f'<option value="{V1}">' in form and f'<option value="{V2}">' in form
    reader = model_page(False)
    assert 'id="aliases"' in reader and 'id="alias-form"' not in reader
    assert "Delete alias" not in reader


def test_a_running_canary_shows_both_arms_and_the_owner_can_promote_or_abort_it():
    canary = {
        "version": V1,
        "percent": 12.5,
        "since": "2026-12-07T10:00:00Z",
        "url": "http://hub/models/alice/iris@canary/",
        "stats": {
            "stable": {"requests": 90, "errors": 0, "error_rate": 0.0, "p50_ms": 1.2, "p95_ms": 2},
            "canary": {
                "requests": 0,
                "errors": 0,
                "error_rate": None,
                "p50_ms": None,
                "p95_ms": None,
            },
        },
    }
    html = model_page(True, canary=canary)
    status = html.split('id="canary-status"')[1].split("</p>")[0]
    assert f"{V1[:19]}</code>" in status and "<b>12.5%</b>" in status
    stats = html.split('id="canary-stats"')[1].split("</table>")[0]
    assert "<td>production</td><td>90</td><td>0</td>" in stats
    assert "<td>0.0%</td>" in stats and "<td>-</td>" in stats  # no requests yet: no rate
    for action in ("canary-promote", "canary-abort", "canary"):
        assert f'action="/services/p/models/alice/iris/{action}"' in html
    form = html.split('id="canary-form"')[1].split("</form>")[0]
    assert f'<option value="{V1}" selected>' in form and f'value="{V2}"' not in form  # V2 is live
    assert 'value="12.5" required' in form
    reader = model_page(False, canary=canary)
    assert 'id="canary-stats"' in reader and "canary-promote" not in reader
    assert 'id="no-canary"' in model_page(True)


def test_the_owner_sees_how_a_shadow_compares_and_can_stop_it():
    differs = {
        "inputs": {"temp": "<b>1</b>"},
        "production": 3.0,
        "shadow": 4.5,
        "agree": False,
        "shadow_status": 200,
        "shadow_error": None,
    }
    refused = {**differs, "shadow": None, "shadow_status": 400, "shadow_error": "no 'temp'"}
    shadow = {
        "version": V1,
        "percent": 10.0,
        "summary": {
            "rows": 5,
            "compared": 4,
            "agree": 3,
            "agreement": 0.75,
            "shadow_errors": 1,
            "dropped": 2,
            "production_p50_ms": 1.5,
            "production_p95_ms": 2.0,
            "shadow_p50_ms": None,
            "shadow_p95_ms": None,
        },
        "rows": [{**differs, "agree": True}, differs, refused],
    }
    html = model_page(True, shadow=shadow)
    summary = html.split('id="shadow-summary"')[1].split("</p>")[0]
    assert "<b>4</b> (and 1 the shadow failed)" in summary and "(75.0%)" in summary
    assert "dropped (its queue was full): 2" in summary
    assert "<td>production</td>\n                <td>1.5</td>" in html
    differ = html.split('id="shadow-differ"')[1].split("</table>")[0]
    assert differ.count("<tr>") == 3  # the header, then the two rows that differ, newest first
    assert differ.index("no &#39;temp&#39;") < differ.index("4.5")
    assert "\\u003cb\\u003e1" in differ and "<b>1</b>" not in differ  # escaped (tojson)
    assert 'action="/services/p/models/alice/iris/shadow-stop"' in html
    form = html.split('id="shadow-form"')[1].split("</form>")[0]
    assert f'<option value="{V1}" selected>' in form and 'value="10" required' in form
    assert 'id="shadow-title"' not in model_page(False)  # callers' inputs: the owner's alone
    assert 'id="no-shadow"' in model_page(True)


def test_history_shows_what_served_when_and_who_changed_what():
    html = model_page(False)  # readers see it too
    served = html.split('id="served"')[1].split("</table>")[0]
    assert served.index("now (live)") < served.index("2026-12-02T10:00:00Z")  # newest first
    assert '<tr data-alias="staging">\n            <td>staging</td>' in served
    changes = html.split('id="changes"')[1].split("</table>")[0]
    assert "&lt;b&gt;alice&lt;/b&gt;" in changes and "<b>alice</b>" not in changes  # escaped
    assert '<tr class="text-danger" data-step="failed">' in changes and "<td>mlhub</td>" in changes


def test_the_inference_log_shows_its_rows_escaped_and_the_drift():
    import datetime

    rows = [
        {
            "time": datetime.datetime(2026, 12, 7, 10, 0, 0),
            "version": V2,
            "status": 400,
            "latency_ms": 0.4,
            "inputs": None,
            "outputs": None,
            "error": "input 'temp' is <b>bold</b>",
        },
        {
            "time": datetime.datetime(2026, 12, 7, 9, 59, 0),
            "version": V2,
            "status": 200,
            "latency_ms": 1.25,
            "inputs": {"temp": 1.5},
            "outputs": 3.0,
            "error": None,
        },
    ]
    drift = {
        "recent_rows": 300,
        "reference_rows": 5,
        "note": "the comparison is weak",
        "features": [
            {
                "feature": "temp",
                "kind": "number",
                "psi": 1.5,
                "ks": 0.6,
                "p_value": 0.0,
                "reference_mean": 1.5,
                "recent_mean": 4.5,
                "drifted": True,
            }
        ],
    }
    html = model_page(True, inferences=rows, drift=drift)
    assert "Keeps 50% of the requests" in html
    assert 'value="50"' in html  # the form's current share
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert '<code>{"temp": 1.5}</code>' in html
    assert "Drift over the last day (300 rows against 5 published)" in html
    assert "the comparison is weak" in html
    assert 'data-feature="temp"' in html and "1.5 &rarr; 4.5" in html
    off = model_page(True, model={**VIEW, "inference_log": None})
    assert "Off: keep what callers send and get" in off and 'id="inferences"' not in off


def test_the_history_shows_the_newest_entries_and_counts_the_rest():
    changes = [{**HISTORY["changes"][0], "message": f"change {i}"} for i in range(5)]
    history = newest({"served": HISTORY["served"], "changes": changes}, 3)
    assert [c["message"] for c in history["changes"]] == ["change 4", "change 3", "change 2"]
    assert history["served"][0]["until"] is None  # the live interval first
    assert history["older"] == 2
    html = model_page(True, history=history)
    assert "2 older entries" in html and "mlhub models history iris" in html
    assert "older entries" not in model_page(True)
