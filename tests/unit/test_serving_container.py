"""The serving-python image's entry point: nginx's configuration and uWSGI behind a socket."""

from mlhub.serving.container import nginx_conf
from mlhub.serving.launch import uwsgi_argv
from mlhub.serving.settings import Settings


def test_nginx_takes_the_limits_from_the_serving_settings():
    settings = Settings.from_env(
        {"MLHUB_BUNDLE": "/b", "MLHUB_MAX_BODY_BYTES": "1000", "MLHUB_REQUEST_TIMEOUT": "7"}
    )
    conf = nginx_conf(settings, port=8080, socket="/run/u.sock", run_dir="/tmp/r")
    assert "listen 8080;" in conf
    assert "client_max_body_size 1000;" in conf
    assert "uwsgi_pass unix:/run/u.sock;" in conf
    assert "uwsgi_read_timeout 12s;" in conf and "client_body_timeout 7s;" in conf
    # nginx's own refusals are the contract's JSON errors
    assert '"code": "payload_too_large", "detail": {"limit": 1000}' in conf
    assert '"code": "not_ready"' in conf
    # a non-root nginx writes only below run_dir
    assert "pid /tmp/r/nginx.pid;" in conf and "client_body_temp_path /tmp/r/client_body;" in conf


def test_uwsgi_speaks_its_own_protocol_on_a_socket_behind_nginx(tmp_path):
    argv = uwsgi_argv(tmp_path, socket="/run/u.sock", env={})
    assert argv[argv.index("--socket") + 1] == "/run/u.sock"
    assert "--http" not in argv and "--http-keepalive" not in argv
    assert "--chmod-socket=600" in argv
