"""The state file that makes reruns resume (``mlhub.batch.state``)."""

import json

import pytest

from mlhub.batch.errors import StateMismatch
from mlhub.batch.state import RunState

JOB = {"model": "alice/lr", "source": "files a", "dest": "files b"}


def state(path, job_id="job-1", version="v1", restart=False):
    return RunState(path, job_id=job_id, job=JOB, version=version, restart=restart)


def test_a_rerun_resumes_with_the_committed_chunks(tmp_path):
    path = tmp_path / "s.jsonl"
    first = state(path)
    assert first.fresh and first.committed == {}
    first.commit(0, rows=10, scored=9, rejected=1)
    first.commit(2, rows=10, scored=10, rejected=0)
    again = state(path)
    assert not again.fresh
    assert sorted(again.committed) == [0, 2]
    assert again.committed[0]["rejected"] == 1


def test_a_line_cut_short_by_a_kill_is_dropped_and_appending_goes_on(tmp_path):
    path = tmp_path / "s.jsonl"
    state(path).commit(0, rows=10, scored=10, rejected=0)
    with open(path, "a") as fh:
        fh.write('{"chunk": 1, "ro')  # what SIGKILL in the middle of an append leaves
    resumed = state(path)
    assert sorted(resumed.committed) == [0]
    resumed.commit(1, rows=10, scored=10, rejected=0)
    assert sorted(state(path).committed) == [0, 1]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_finished_job_starts_fresh_and_restart_forgets(tmp_path):
    path = tmp_path / "s.jsonl"
    run = state(path)
    run.commit(0, rows=1, scored=1, rejected=0)
    run.finish()
    assert state(path).fresh  # a scheduled job scores its source again
    unfinished = state(path)
    unfinished.commit(0, rows=1, scored=1, rejected=0)
    assert state(path, restart=True).committed == {}


def test_another_job_or_another_model_version_is_refused(tmp_path):
    path = tmp_path / "s.jsonl"
    state(path).commit(0, rows=1, scored=1, rejected=0)
    with pytest.raises(StateMismatch, match="belongs to another job"):
        state(path, job_id="job-2")
    with pytest.raises(StateMismatch, match=r"changed version .*v1 -> v2"):
        state(path, version="v2")
    assert state(path, version="v2", restart=True).fresh
