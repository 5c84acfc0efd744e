"""R models in embedded mode, through a real ``mlhub up`` (conftest.py's ``hub``): the
publisher checks an R bundle with the R runtime, the local deployer serves it with the serving-r
image's launcher (plumber processes behind nginx) behind the proxy, with the same rolling
update, self-healing, rollback and scaling as a Python model; a model needing R packages the
runtime lacks is refused at publish time; and a Python client (``mlhub.batch``) scores a table
with an R model.

Nothing here asserts how long anything takes: waits only guard against hanging.
"""

import json
import os
import pwd
import signal
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pytest
from support.embedded_hub import alive, uid_of, wait_for
from support.publishing import live_instance, predict, steps
from support.rmodels import constant_bundle, formula_bundle, pid_bundle, rscript
from support.rolling_update import Load, roll_under_load

from mlhub.batch import score
from mlhub.errors import InvalidBundle

pytestmark = [pytest.mark.component, pytest.mark.slow]


def test_r_model_rolls_heals_and_rolls_back_like_a_python_model(hub, tmp_path):
    first = hub.client.publish(constant_bundle(tmp_path / "v1", 1.0), "const-r")
    assert first["status"] == "ready"
    assert first["versions"][0]["runtime"] == "r" and first["versions"][0]["flavor"] == "rds"
    roll_under_load(hub, "const-r", constant_bundle(tmp_path / "v2", 2.0), rows=[{"x": 0.5}])

    old = live_instance(hub, "const-r")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: "restarted" in steps(hub, "const-r"), "the supervisor to restart it")
    wait_for(lambda: live_instance(hub, "const-r")["pid"] != old, "the new pid in the store")
    assert not alive(old) and alive(live_instance(hub, "const-r")["pid"])
    answer = wait_for(
        lambda: predict(hub, "alice", "const-r", hub.alice, [{"x": 1}]), "predictions"
    )
    assert answer.json() == {"predictions": [2.0]}

    hub.client.rollback("const-r")
    assert predict(hub, "alice", "const-r", hub.alice, [{"x": 1}]).json() == {"predictions": [1.0]}
    bad = predict(hub, "alice", "const-r", hub.alice, [{"x": "one"}])
    assert bad.status_code == 400 and bad.json()["detail"]["column"] == "x"
    # the refusal is in the model's log, one structured line (as the Python runtime's)
    logged = wait_for(
        lambda: [ln for ln in hub.client.logs("const-r").splitlines() if "request {" in ln],
        "the request log line",
    )
    assert '"code":"invalid_input"' in logged[-1] and '"route":"/v1/predict"' in logged[-1]
    assert predict(hub, "alice", "const-r", hub.bob, [{"x": 1}]).status_code == 403


def test_r_model_needing_missing_packages_is_refused_at_publish(hub, tmp_path):
    packages = [{"name": "notAnRPackage", "version": "0.1"}]
    path = constant_bundle(tmp_path / "b", 1.0, name="needy-r", packages=packages)
    with pytest.raises(InvalidBundle) as caught:
        hub.client.publish(path, "needy-r")
    message = caught.value.message
    assert "notAnRPackage (0.1)" in message and "lacks" in message, message
    models = [m["name"] for m in hub.client.list()]
    assert "needy-r" not in models or hub.client.get("needy-r")["current_version"] is None


def test_python_client_scores_a_table_with_an_r_model(hub, tmp_path):
    """``mlhub.batch`` (Python) against the plumber runtime: the predictions are R's own
    ``predict()``, and a row with an unknown factor level is rejected with the R server's
    message while the others are scored."""
    hub.client.publish(formula_bundle(tmp_path / "formula"), "formula-r")
    key = hub.client.create_key("formula-r", "batch")["key"]
    rows = pd.DataFrame(
        {
            "temp": [0.5, -1.0, 2.0, 0.0],
            "pressure": [1.25, 0.0, -3.5, 1.0],
            "line": ["a", "c", "b", "z"],
            "count": pd.array([2, 7, 0, 1], dtype="int32"),
        }
    )
    rows.to_parquet(tmp_path / "in.parquet")
    # what R itself predicts for the good rows, with the same fitted model
    good = rows.iloc[:3]
    script = (
        "m <- readRDS(commandArgs(TRUE)[1]);"
        "d <- read.csv(commandArgs(TRUE)[2]);"
        "d$line <- factor(d$line, levels = c('a', 'b', 'c'));"
        "cat(format(predict(m, newdata = d), digits = 17), sep = '\\n')"
    )
    good.to_csv(tmp_path / "good.csv", index=False)
    in_r = [
        float(v) for v in rscript(script, tmp_path / "formula.rds", tmp_path / "good.csv").split()
    ]
    report = score(
        f"{hub.url}models/alice/formula-r/",  # the endpoint URL and its API key
        str(tmp_path / "in.parquet"),
        str(tmp_path / "out"),
        url=hub.url,
        token=key,
        state=str(tmp_path / "state.jsonl"),
        progress=False,
    )
    assert (report.rows, report.scored, report.rejected) == (4, 3, 1)
    out = pads.dataset(tmp_path / "out", format="parquet").to_table().to_pandas()
    out = out.sort_values(out.columns[0])
    assert out["prediction"].tolist() == pytest.approx(in_r, abs=1e-9)
    rejects = [
        json.loads(line)
        for part in sorted((tmp_path / "out" / "_rejects").iterdir())
        for line in part.read_text().splitlines()
    ]
    assert len(rejects) == 1 and "'a', 'b', 'c'" in rejects[0]["error"]


def r_processes(launcher):
    """Pids of the R processes a serving instance's launcher runs (its children named R)."""
    found = set()
    for entry in os.scandir("/proc"):
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except (OSError, ValueError):
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        if name == "R" and int(fields[1]) == launcher and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def pids_of(answers):
    return [round(a) for a in answers]


def test_scaled_r_model_serves_with_that_many_r_processes(hub, tmp_path):
    """``scale 3`` serves an R model with 3 plumber processes behind nginx: a model that
    predicts its own process id answers from the 3 R processes of the live instance, in turn
    from the first request (each had loaded the model before the instance was ready), with no
    failed request across the rescale. A killed R process gets its instance replaced whole."""
    hub.client.publish(pid_bundle(tmp_path / "pid"), "pid-r")
    load = Load(hub, "pid-r", rows=[{"x": 0.0}])
    load.start()
    try:
        wait_for(lambda: len(load.answers) >= 5, "answers from one R process")
        (single,) = set(pids_of(load.answers))
        hub.client.scale("pid-r", 3)
        wait_for(lambda: pids_of(load.answers).count(single) < len(load.answers) - 30, "answers")
    finally:
        load.stop()
    assert load.failures == []
    pids = pids_of(load.answers)
    switch = next(i for i, pid in enumerate(pids) if pid != single)
    assert set(pids[:switch]) == {single}
    after = pids[switch:]
    live = live_instance(hub, "pid-r")
    assert hub.client.get("pid-r")["replicas"] == 3 and live["workers"] == 3
    assert set(after) == r_processes(live["pid"]) and len(set(after)) == 3
    assert all(len(set(after[i : i + 3])) == 3 for i in range(len(after) - 2)), after[:12]
    # multi-user mode (CI runs as root): the launcher and every R process are alice's account
    if os.geteuid() == 0:
        alice = pwd.getpwnam("mlhub-alice").pw_uid
        assert {uid_of(pid) for pid in {live["pid"], *after}} == {alice}

    victim = sorted(set(after))[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "restarted" in steps(hub, "pid-r"), "the instance to be replaced")
    wait_for(lambda: live_instance(hub, "pid-r")["pid"] != live["pid"], "the new instance")
    assert not any(alive(pid) for pid in {live["pid"], *after})
    replaced = live_instance(hub, "pid-r")
    replies = [predict(hub, "alice", "pid-r", hub.alice, [{"x": 0}]) for _ in range(6)]
    answers = [reply.json()["predictions"][0] for reply in replies]
    assert set(pids_of(answers)) == r_processes(replaced["pid"]) and len(set(answers)) == 3
