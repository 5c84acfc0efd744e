"""The R runtime's launcher (``mlhub.serving_r.launch``): nginx's configuration in front of the
plumber processes, and the refusal of several R workers where nginx is not installed. The
processes themselves run in tests/component/test_r_models_embedded.py and the serving-r image's
smoke test."""

import os
import stat

from mlhub.serving.settings import Settings
from mlhub.serving_r import launch


def settings(**env):
    return Settings.from_env({"MLHUB_BUNDLE": "/b", **env})


def test_nginx_spreads_requests_over_every_plumber_process():
    conf = launch.nginx_conf(
        settings(MLHUB_MAX_BODY_BYTES="1000", MLHUB_REQUEST_TIMEOUT="7"),
        host="127.0.0.1",
        port=41234,
        backends=[40001, 40002, 40003],
        run_dir="/tmp/run",
    )
    assert "listen 127.0.0.1:41234;" in conf
    servers = [line.strip() for line in conf.splitlines() if line.strip().startswith("server 1")]
    assert servers == [f"server 127.0.0.1:{p} max_fails=0;" for p in (40001, 40002, 40003)]
    assert "proxy_pass http://backend;" in conf and "proxy_next_upstream error timeout;" in conf
    assert "proxy_read_timeout 12s;" in conf and "client_max_body_size 1000;" in conf
    assert '"code": "payload_too_large", "detail": {"limit": 1000}' in conf
    assert (
        "pid /tmp/run/nginx.pid;" in conf and "client_body_temp_path /tmp/run/client_body;" in conf
    )
    assert "user " not in conf  # an nginx not started as root keeps its user


def test_nginx_started_as_root_keeps_its_workers_able_to_write_the_run_dir():
    conf = launch.nginx_conf(
        settings(), host="::1", port=8080, backends=[40001], run_dir="/r", user="root"
    )
    assert conf.splitlines()[1] == "user root;"
    assert "listen [::1]:8080;" in conf


def without_nginx(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(launch, "_SBIN", ())


def test_several_workers_need_nginx_and_the_refusal_says_what_to_install(monkeypatch, tmp_path):
    without_nginx(monkeypatch, tmp_path)
    assert launch.find_nginx() is None
    assert launch.workers_refused(1) is None  # one plumber serves alone
    reason = launch.workers_refused(3)
    assert "3 R processes behind nginx" in reason and "apt-get install nginx-light" in reason
    fake = tmp_path / "nginx"  # any executable named nginx on PATH is found
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert launch.find_nginx() == str(fake) and launch.workers_refused(3) is None


def test_launcher_refuses_several_workers_without_nginx_before_starting_r(
    monkeypatch, tmp_path, capsys
):
    without_nginx(monkeypatch, tmp_path)
    rscript = tmp_path / "Rscript"  # never run: the refusal comes first
    rscript.write_text("#!/bin/sh\nexit 9\n")
    rscript.chmod(0o755)
    assert launch.main(["--bundle", str(tmp_path), "--workers", "2", "--port", "1"]) == 2
    assert "apt-get install nginx-light" in capsys.readouterr().err


def test_run_dirs_of_launchers_that_no_longer_run_are_removed(tmp_path):
    """A launcher killed with SIGKILL cannot remove its run dir; the next one does."""
    dead = tmp_path / f"{launch.RUN_PREFIX}4999999-abc"  # above any pid_max: never running
    running = tmp_path / f"{launch.RUN_PREFIX}{os.getpid()}-def"
    other = tmp_path / "mlhub-serving-python"
    for path in (dead, running, other):
        (path / "metrics").mkdir(parents=True)
    launch.remove_stale_run_dirs(tmp_path)
    assert not dead.exists() and running.exists() and other.exists()
