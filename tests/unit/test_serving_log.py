"""The owner's view of a model's log: uWSGI's start-up banner goes, what the owner can act on
stays. data/uwsgi-start.log is what a real uWSGI 2.0 wrote (as root) serving a bundle, then one
refused request and a shutdown."""

from pathlib import Path

from mlhub.deployers.processes import tail_lines
from mlhub.deployers.serving_log import readable, shown

REAL_LOG = (Path(__file__).parent / "data" / "uwsgi-start.log").read_text()
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
