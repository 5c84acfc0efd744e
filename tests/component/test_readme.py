"""The README's blocks run as written (read from README.md, only the hub's and the database's
addresses put in) against a real ``mlhub up`` where ada has published ``defect-rf`` from a
notebook before, as the README's story goes: "Publish a model" from code (as a kernel of ada's
server runs it), "Call it", "Score a table" from a real PostgreSQL, and "Manage it"."""

import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from support.batchtest import Postgres
from support.embedded_hub import PUBLISHER_SERVICE, VENV_BIN, running_hub, wait_for

from mlhub.bundle import save_bundle
from mlhub.publisher.client import PublisherClient

pytestmark = [pytest.mark.component, pytest.mark.slow]
README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:8000"
README_DB = "postgresql://me@db/fab"
# what the README's Python block takes from the notebook it sits in
NOTEBOOK = """
import pandas as pd
from sklearn.linear_model import LinearRegression

X_train = pd.DataFrame({"temp": [1.0, 2.0, 3.0, 4.0], "pressure": [0.0, 1.0, 0.0, 1.0]})
model = LinearRegression().fit(X_train, 3 * (X_train["temp"] + X_train["pressure"]))
"""


def shell_block(after, language="bash"):
    """The first ```bash block (or ``language``) after the line containing ``after``."""
    text = README.read_text()
    start = text.index(after)
    block = re.search(rf"```{language}\n(.*?)```", text[start:], re.S)
    lines = block.group(1).splitlines()
    indent = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.strip())
    return "\n".join(line[indent:] for line in lines)


def defect_bundle(path, scale):
    X = pd.DataFrame({"temp": [1.0, 2.0, 3.0, 4.0], "pressure": [0.0, 1.0, 0.0, 1.0]})
    model = LinearRegression().fit(X, scale * (X["temp"] + X["pressure"]))
    save_bundle(model, path, name="defect-rf", example=X.head(2))
    return path


@pytest.fixture(scope="module")
def ada(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("readme"), "", ("ada",)) as hub:
        work = tmp_path_factory.mktemp("work")
        client = PublisherClient(url=hub.url, token=hub.ada, poll_interval=0.2)
        client.publish(defect_bundle(work / "notebook", 1.0), "defect-rf")
        defect_bundle(work / "my-bundle", 2.0)  # the README's ./my-bundle
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "MLHUB_URL": hub.url,
            "MLHUB_TOKEN": hub.ada,
            "KEY": client.create_key("defect-rf", "readme")["key"],
        }
        yield hub, work, env


def run(script, hub, work, env):
    script = script.replace(README_URL, hub.url.rstrip("/"))
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_in_kernel(ada, code):
    """Run ``code`` in a Python with what a kernel of ada's server has in its environment (the
    hub gives every server and kernel these); return what it printed."""
    hub, work, env = ada
    kernel_env = {
        **env,
        "MLHUB_PUBLISHER_URL": f"{hub.url}services/{PUBLISHER_SERVICE}/",
        "MLHUB_PUBLIC_URL": hub.url,
        "JUPYTERHUB_API_TOKEN": hub.ada,
        "JUPYTERHUB_USER": "ada",
    }
    done = subprocess.run(
        [f"{VENV_BIN}/python", "-c", code],
        cwd=work,
        env=kernel_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_call_it(ada):
    hub, work, env = ada
    done = run(shell_block("**Call it.**"), hub, work, env)
    assert done.returncode == 0, done.stderr
    assert '{"predictions":[4.6' in done.stdout.replace(" ", ""), done.stdout


def test_publish_from_code(ada):
    """The Python block, in a Python with what a kernel of ada's server has in its environment
    (the hub gives every server and kernel these); ``publish_panel()`` outside a notebook shows
    nothing and harms nothing."""
    hub, work, env = ada
    printed = "print(result.url)\nopen('call.sh', 'w').write(result.curl)\n"
    printed += "open('call.py', 'w').write(result.python)\n"
    code = NOTEBOOK + shell_block("**Publish a model.**", "python") + "\n" + printed
    stdout = run_in_kernel(ada, code)
    assert stdout.strip().endswith(f"{hub.url}models/ada/defect-rf/"), stdout
    answer = PublisherClient(url=hub.url, token=hub.ada).predict(
        "defect-rf", [{"temp": 1.0, "pressure": 1.0}], key=env["KEY"]
    )
    assert answer["predictions"] == pytest.approx([6.0])  # the notebook's model (3x) is live
    # the snippets mlhub.publish printed work as pasted (with the key they say to export)
    with_key = {**env, "MLHUB_API_KEY": env["KEY"]}
    for command in (["bash", "call.sh"], [f"{VENV_BIN}/python", "call.py"]):
        done = subprocess.run(command, cwd=work, env=with_key, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        numbers = [float(n) for n in re.findall(r"-?\d+\.\d*(?:e-?\d+)?", done.stdout)]
        assert numbers == pytest.approx([3.0, 9.0]), done.stdout  # the example's two rows


def test_watch_it(ada):
    """The "Watch it" block, in two runs of a kernel-like Python with callers in between: the
    publish with the log on, then reading the log and the drift once they called."""
    hub, work, env = ada
    publish, read = shell_block("**Watch it.**", "python").split("# once callers have called it:")
    notebook = NOTEBOOK + "import mlhub\nX_test = X_train\n"
    read += "\nprint(len(log), log['temp'].tolist(), drift.set_index('feature')['psi'].to_dict())"
    run_in_kernel(ada, notebook + publish)
    client = PublisherClient(url=hub.url, token=hub.ada)  # the callers
    for temp in (1.0, 2.0, 3.0):
        client.predict("defect-rf", [{"temp": temp, "pressure": 1.0}], key=env["KEY"])
    # the serving processes send every 2 s
    wait_for(lambda: len(client.inference_log("defect-rf")) == 3, "the calls in the log")
    printed = run_in_kernel(ada, notebook + read)
    last = printed.strip().splitlines()[-1]
    assert last.startswith("3 [1.0, 2.0, 3.0] {'temp': "), printed
    assert "'pressure': " in last


def test_score_a_table(ada):
    hub, work, env = ada
    pg = Postgres()
    try:
        pg.psql(
            "CREATE TABLE wafers (id int PRIMARY KEY, temp float, pressure float);"
            "INSERT INTO wafers SELECT i, i, i % 2 FROM generate_series(1, 500) AS i"
        )
        script = shell_block("**Score a table**").replace(README_DB, pg.url)
        done = run(script, hub, work, env)
        assert done.returncode == 0, done.stdout + done.stderr
        scored = pg.psql("SELECT count(*), count(prediction) FROM defect_scores")
        assert scored == ["500|500"], scored
    finally:
        pg.stop()


def test_release_it(ada):
    """The "Release it safely" block as written: a candidate published to staging, a canary
    of it promoted, a shadow of the version before compared and stopped, an alias made."""
    hub, work, env = ada
    done = run(shell_block("**Release it safely.**"), hub, work, env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "defect-rf: ready at " in out and "/models/ada/defect-rf@staging/" in out
    assert "gets 20% of the requests" in out and "ARM" in out
    assert "production serves " in out  # the promotion
    assert "shadow stopped" in out and "compared rows:" in out
    aliases = [line.split()[0] for line in out.split("ALIAS")[-1].splitlines()[1:] if line]
    assert aliases[:3] == ["production", "qa", "staging"], out
    client = PublisherClient(url=hub.url, token=hub.ada)
    model = client.get("defect-rf")
    staging = [a["version"] for a in model["aliases"] if a["name"] == "staging"]
    assert model["current_version"] == staging[0]  # promoted
    assert model["canary"] is None and model["shadow"] is None
    served = [(s["alias"], s["until"] is None) for s in client.history("defect-rf")["served"]]
    assert ("canary", False) in served and ("qa", True) in served
    answer = client.predict("defect-rf", [{"temp": 1.0, "pressure": 1.0}], key=env["KEY"])
    assert answer["predictions"] == [4.0]  # ./my-bundle answers 2 * (temp + pressure)


def test_manage_it(ada):
    hub, work, env = ada
    done = run(shell_block("**Manage it**"), hub, work, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "defect-rf" in done.stdout
    assert "mlhk_" in done.stdout  # keys create shows the new key once
    # history: the versions that served, and ada's publish, rollback, scale and key by name
    assert "served:" in done.stdout and "until now (live)" in done.stdout
    assert re.search(r"ada +requested .*rollback to", done.stdout), done.stdout
    assert re.search(r"ada +key_created", done.stdout), done.stdout
    models = PublisherClient(url=hub.url, token=hub.ada).list()
    assert "defect-rf" not in [m["name"] for m in models]  # the block ends with delete
