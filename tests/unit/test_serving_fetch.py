"""``python -m mlhub.serving fetch``: a pod's bundle, downloaded and checked against its version.

A real HTTP server on 127.0.0.1 stands in for the publisher's bundle endpoint.
"""

import pytest
from support.standin_http import StandInHandler, StandInServer

from mlhub import bundle
from mlhub.serving.__main__ import main
from mlhub.serving.fetch import FetchError, fetch_bundle


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    (src / "model").mkdir(parents=True)
    (src / "mlhub.yaml").write_text(
        "format: 1\nname: iris\nruntime: python\nflavor: sklearn\nmodel_file: model/m.pkl\n"
    )
    (src / "model" / "m.pkl").write_bytes(b"weights")
    return src


@pytest.fixture
def publisher(source):
    """Serves the bundle to ``token good`` only; ``/flaky`` fails twice with 503 first."""
    body = bundle.pack(source)
    state = {"flaky": 2}

    class Handler(StandInHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != "token good":
                self.reply(401, b'{"error": "this bundle token is not the one of alice/iris"}')
                return
            if self.path == "/flaky" and state["flaky"]:
                state["flaky"] -= 1
                self.reply(503)
                return
            self.reply(200, body)

    server = StandInServer(Handler)
    yield server.url
    server.close()


def test_fetch_unpacks_the_version_asked_for(publisher, source, tmp_path):
    digest = bundle.bundle_digest(source)
    dest = fetch_bundle(publisher + "/b", digest, tmp_path / "pod" / "bundle", "good")
    assert bundle.bundle_digest(dest) == digest
    assert (dest / "model" / "m.pkl").read_bytes() == b"weights"


def test_other_content_than_the_version_is_refused(publisher, tmp_path):
    with pytest.raises(FetchError, match="not the version sha256:00"):
        fetch_bundle(publisher + "/b", "sha256:00", tmp_path / "bundle", "good")
    assert not (tmp_path / "bundle").exists()


def test_a_refused_token_is_final_and_says_why(publisher, tmp_path):
    sleeps = []
    with pytest.raises(FetchError, match="401.*not the one of alice/iris"):
        fetch_bundle(publisher, "sha256:00", tmp_path / "b", "bad", sleep=sleeps.append)
    assert sleeps == []


def test_a_restarting_publisher_is_retried(publisher, source, tmp_path):
    digest = bundle.bundle_digest(source)
    sleeps = []
    fetch_bundle(publisher + "/flaky", digest, tmp_path / "b", "good", sleep=sleeps.append)
    assert sleeps == [1, 2]


def test_command_line_needs_the_token(publisher, source, tmp_path, monkeypatch, capsys):
    digest = bundle.bundle_digest(source)
    args = ["fetch", "--url", publisher, "--digest", digest, "--dest", str(tmp_path / "b")]
    monkeypatch.delenv("MLHUB_BUNDLE_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        main(args)
    assert "MLHUB_BUNDLE_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("MLHUB_BUNDLE_TOKEN", "bad")
    assert main(args) == 1
    monkeypatch.setenv("MLHUB_BUNDLE_TOKEN", "good")
    assert main(args) == 0
    assert bundle.bundle_digest(tmp_path / "b") == digest
