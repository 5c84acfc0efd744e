"""The owner's view of a model's log: uWSGI's start-up banner goes, what the owner can act on
stays. The log below is what a real uWSGI 2.0 wrote (as root) serving a bundle, then one
refused request and a shutdown."""

from mlhub.deployers.processes import tail_lines
from mlhub.deployers.serving_log import readable, shown

REAL_LOG = """\
*** Starting uWSGI 2.0.31 (64bit) on [Mon Dec  7 12:27:16 2026] ***
compiled with version: 12.2.0 on 07 December 2026 12:08:25
os: Linux-6.18.44-fc-v1300 #1 SMP PREEMPT_DYNAMIC @0
nodename: vm
machine: x86_64
clock source: unix
detected number of CPU cores: 2
current working directory: /tmp
detected binary path: /work/main/.venv/bin/uwsgi
!!! no internal routing support, rebuild with pcre support !!!
uWSGI running as root, you can use --uid/--gid/--chroot options
*** WARNING: you are running uWSGI as root !!! (use the --uid flag) ***
your processes number limit is 96367
your memory page size is 4096 bytes
 *** WARNING: you have enabled harakiri without post buffering. Slow upload could be rejected on post-unbuffered webservers ***
detected max file descriptor number: 20000
lock engine: pthread robust mutexes
thunder lock: enabled
sharedarea 0 created at 0x7f18b6431000 (3 pages, area at 0x7f18b6432000)
uWSGI http bound on 127.0.0.1:18931 fd 4
uwsgi socket 0 bound to TCP address 127.0.0.1:34969 (port auto-assigned) fd 3
uWSGI running as root, you can use --uid/--gid/--chroot options
*** WARNING: you are running uWSGI as root !!! (use the --uid flag) ***
Python version: 3.11.2 (main, Apr 28 2025, 14:11:48) [GCC 12.2.0]
PEP 405 virtualenv detected: /work/main/.venv
Set PythonHome to /work/main/.venv
Python main interpreter initialized at 0x7f18b6360018
uWSGI running as root, you can use --uid/--gid/--chroot options
*** WARNING: you are running uWSGI as root !!! (use the --uid flag) ***
python threads support enabled
your server socket listen backlog is limited to 100 connections
your mercy for graceful operations on workers is 60 seconds
mapped 304776 bytes (297 KB) for 2 cores
*** Operational MODE: preforking ***
2026-12-07 12:27:18,274 INFO mlhub.serving: loaded model 'n' (sklearn) from /tmp/nb1 in 1.263 s
2026-12-07 12:27:18,274 WARNING mlhub.serving: MLHUB_AUTH is on but neither MLHUB_ACCESS_FILE nor JUPYTERHUB_API_URL is set: every request that needs a token will be refused
WSGI app 0 (mountpoint='') ready in 2 seconds on interpreter 0x7f18b6360018 pid: 18098 (default app)
uWSGI running as root, you can use --uid/--gid/--chroot options
*** WARNING: you are running uWSGI as root !!! (use the --uid flag) ***
spawned uWSGI master process (pid: 18098)
spawned uWSGI worker 1 (pid: 18109, cores: 1)
spawned uWSGI worker 2 (pid: 18110, cores: 1)
spawned uWSGI http 1 (pid: 18111)
running "unix_signal:15 gracefully_kill_them_all" (master-start)...
2026-12-07 12:27:22,622 INFO mlhub.serving.requests: request {"method": "POST", "route": "/v1/predict", "status": 401, "ms": 5.1, "code": "unauthorized", "error": "this model needs a token: send 'Authorization: token <key>' with an API key of this model or your JupyterHub token"}
Mon Dec  7 12:27:28 2026 - graceful shutdown triggered...
gateway "uWSGI http 1" has been buried (pid: 18111)
goodbye to uWSGI.
"""
KEPT = [
    "loaded model 'n' (sklearn) from /tmp/nb1 in 1.263 s",
    "MLHUB_AUTH is on but neither",
    'request {"method": "POST", "route": "/v1/predict", "status": 401',
    "graceful shutdown triggered...",
    'gateway "uWSGI http 1" has been buried',
    "goodbye to uWSGI.",
]


def test_the_banner_goes_and_what_an_owner_acts_on_stays():
    shown_lines = readable(REAL_LOG, 1000).splitlines()
    assert len(shown_lines) == len(KEPT)
    for line, kept in zip(shown_lines, KEPT, strict=True):
        assert kept in line
    assert not [ln for ln in shown_lines if "root" in ln or "ready in" in ln]


def test_worker_deaths_and_harakiri_are_kept():
    for line in [
        "DAMN ! worker 1 (pid: 4242) died, killed by signal 9 :( trying respawn ...",
        "*** HARAKIRI ON WORKER 2 (pid: 4243, try: 1) ***",
        "Respawned uWSGI worker 1 (new pid: 4250)",
        "Traceback (most recent call last):",
        "--- mlhub: starting sha256:abc on port 40001 as alice: [...]",
    ]:
        assert shown(line + "\n"), line


def test_the_tail_counts_shown_lines(tmp_path):
    log = tmp_path / "model.log"
    log.write_text(REAL_LOG)
    assert tail_lines(log, 2, keep=shown).splitlines() == [
        'gateway "uWSGI http 1" has been buried (pid: 18111)',
        "goodbye to uWSGI.",
    ]
    assert readable(REAL_LOG, 2) == tail_lines(log, 2, keep=shown)
    assert readable(REAL_LOG, 0) == ""
