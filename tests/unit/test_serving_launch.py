"""Settings from the environment and the uWSGI argv the launcher builds from them."""

import pytest

from mlhub.serving.launch import find_uwsgi, process_env, uwsgi_argv
from mlhub.serving.metrics import area_pages
from mlhub.serving.settings import Settings, SettingsError, normalize_prefix


def option(argv, name):
    """The value following ``name`` in argv (the first occurrence)."""
    return argv[argv.index(name) + 1]


def env_options(argv):
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--env")


def test_defaults():
    s = Settings.from_env({"MLHUB_BUNDLE": "/b"})
    assert (s.auth, s.workers, s.request_timeout, s.url_prefix) == (True, 2, 60, "")
    assert s.max_body_bytes == 16 * 1024 * 1024


def test_every_setting_is_read():
    s = Settings.from_env(
        {
            "MLHUB_BUNDLE": "/b",
            "MLHUB_URL_PREFIX": "models/alice/iris/",
            "MLHUB_MODEL_OWNER": "alice",
            "MLHUB_MODEL_VERSION": "sha256:1",
            "MLHUB_AUTH": "off",
            "MLHUB_ACCESS_FILE": "/a.json",
            "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api/",
            "MLHUB_MAX_BODY_BYTES": "1000",
            "MLHUB_REQUEST_TIMEOUT": "5",
            "MLHUB_WORKERS": "3",
            "MLHUB_LAZY_APPS": "on",
            "MLHUB_REQUEST_LOG": "all",
            "MLHUB_REQUEST_LOG_RATE": "5",
        }
    )
    assert s.url_prefix == "/models/alice/iris" and s.hub_api_url.endswith("/hub/api")
    assert (s.owner, s.version, s.auth, s.access_file) == ("alice", "sha256:1", False, "/a.json")
    assert (s.max_body_bytes, s.request_timeout, s.workers) == (1000, 5, 3)
    assert s.lazy_apps == "on" and (s.request_log, s.request_log_rate) == ("all", 5)


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({}, "MLHUB_BUNDLE is not set"),
        ({"MLHUB_BUNDLE": "/b", "MLHUB_WORKERS": "two"}, "not a whole number"),
        ({"MLHUB_BUNDLE": "/b", "MLHUB_WORKERS": "0"}, "minimum is 1"),
        ({"MLHUB_BUNDLE": "/b", "MLHUB_AUTH": "maybe"}, "use 'on' or 'off'"),
        ({"MLHUB_BUNDLE": "/b", "MLHUB_LAZY_APPS": "x"}, "auto, on, off"),
    ],
)
def test_bad_settings_say_which_and_why(env, fragment):
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env(env)


@pytest.mark.parametrize("raw, expected", [("", ""), ("/", ""), ("a/b", "/a/b"), ("/a/", "/a")])
def test_prefix_normalization(raw, expected):
    assert normalize_prefix(raw) == expected


def test_argv_runs_the_app_with_the_contract_options(tmp_path):
    env = {"MLHUB_REQUEST_TIMEOUT": "30", "MLHUB_ACCESS_FILE": "/a.json", "OTHER": "x"}
    argv = uwsgi_argv(tmp_path, 9000, workers=4, prefix="/models/a/m", env=env)
    assert argv[0] == find_uwsgi()
    assert option(argv, "--http") == "127.0.0.1:9000"
    assert option(argv, "--module") == "mlhub.serving.wsgi:application"
    assert option(argv, "--processes") == "4"
    assert option(argv, "--harakiri") == "30" and option(argv, "--worker-reload-mercy") == "30"
    assert option(argv, "--hook-master-start") == "unix_signal:15 gracefully_kill_them_all"
    assert option(argv, "--sharedarea") == str(area_pages(4))
    for flag in (
        "--master",
        "--http-keepalive",
        "--need-app",
        "--die-on-term",
        "--disable-logging",
    ):
        assert flag in argv
    assert "--lazy-apps" not in argv
    assert env_options(argv) == {
        "MLHUB_BUNDLE": str(tmp_path.resolve()),
        "MLHUB_URL_PREFIX": "/models/a/m",
        "MLHUB_WORKERS": "4",
        "MLHUB_REQUEST_TIMEOUT": "30",
        "MLHUB_ACCESS_FILE": "/a.json",
    }
    # pyuwsgi's uwsgi command is this venv's Python already (--virtualenv would fail it)
    assert "--virtualenv" not in argv
    # the settings reach the app's os.environ also under pyuwsgi, whose Python started first
    env = process_env(argv, {"PATH": "/bin"})
    assert env == {"PATH": "/bin", **env_options(argv)}


def test_argv_follows_settings(tmp_path):
    env = {"MLHUB_LAZY_APPS": "on", "MLHUB_WORKERS": "3"}
    argv = uwsgi_argv(tmp_path, 9000, host="0.0.0.0", env=env)
    assert option(argv, "--http") == "0.0.0.0:9000" and option(argv, "--processes") == "3"
    assert "--lazy-apps" in argv
    # the app writes the request outcomes (mlhub.serving.requestlog), not uWSGI
    assert "--disable-logging" in argv and "--log-5xx" in argv


def test_openmp_flavors_load_in_each_worker(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pkl").write_bytes(b"")
    (tmp_path / "mlhub.yaml").write_text(
        "format: 1\nname: gbm\nruntime: python\nflavor: lightgbm\nmodel_file: model/model.pkl\n"
    )
    assert "--lazy-apps" in uwsgi_argv(tmp_path, 9000, env={})
    assert "--lazy-apps" not in uwsgi_argv(tmp_path, 9000, env={"MLHUB_LAZY_APPS": "off"})


def test_bad_port_or_setting_fails_before_uwsgi(tmp_path):
    with pytest.raises(SettingsError, match="not a TCP port"):
        uwsgi_argv(tmp_path, 70000, env={})
    with pytest.raises(SettingsError, match="MLHUB_MAX_BODY_BYTES"):
        uwsgi_argv(tmp_path, 9000, env={"MLHUB_MAX_BODY_BYTES": "lots"})


def test_batching_settings_and_threads():
    off = Settings.from_env({"MLHUB_BUNDLE": "/b"})
    assert (off.batching, off.batch_max_size, off.batch_max_wait_ms, off.threads) == (
        False,
        64,
        2,
        1,
    )
    on = Settings.from_env({"MLHUB_BUNDLE": "/b", "MLHUB_BATCHING": "on"})
    assert on.batching and on.threads == 64  # one thread per row a batch can hold
    sized = Settings.from_env(
        {
            "MLHUB_BUNDLE": "/b",
            "MLHUB_BATCHING": "on",
            "MLHUB_BATCH_MAX_SIZE": "16",
            "MLHUB_BATCH_MAX_WAIT_MS": "0",
            "MLHUB_THREADS": "8",
        }
    )
    assert (sized.batch_max_size, sized.batch_max_wait_ms, sized.threads) == (16, 0, 8)
    with pytest.raises(SettingsError, match="MLHUB_BATCH_MAX_SIZE"):
        Settings.from_env({"MLHUB_BUNDLE": "/b", "MLHUB_BATCH_MAX_SIZE": "0"})


def test_argv_runs_threads_only_when_asked(tmp_path):
    assert "--threads" not in uwsgi_argv(tmp_path, 9000, env={})
    argv = uwsgi_argv(tmp_path, 9000, env={"MLHUB_BATCHING": "on", "MLHUB_BATCH_MAX_SIZE": "32"})
    assert option(argv, "--threads") == "32"
    assert env_options(argv)["MLHUB_BATCHING"] == "on"
