"""``mlhub models`` commands' own logic (the README's commands run against a live hub in
tests/component/test_readme.py)."""

import io

from mlhub.cli_models import follow_logs, write_drift, write_history


def test_logs_follow_prints_each_new_line_once():
    class Growing:
        """A publisher whose model log grows between polls (a fake client for this unit test)."""

        def __init__(self):
            self.lines = [f"line {i}\n" for i in range(5)]

        def logs(self, name, tail, alias=None):
            text = "".join(self.lines[-tail:])
            self.lines += [f"line {len(self.lines)}\n", f"line {len(self.lines) + 1}\n"]
            return text

    out = io.StringIO()
    follow_logs(Growing(), "iris", 3, out, sleep=lambda s: None, polls=3)
    assert out.getvalue() == "".join(f"line {i}\n" for i in range(2, 9))


def test_history_prints_what_served_when_and_who_changed_what():
    history = {
        "served": [
            {"version": "sha256:" + "a" * 64, "since": "2026-12-01T10:00:00Z", "until": "X"},
            {"alias": "staging", "version": "sha256:" + "b" * 64, "since": "X", "until": None},
        ],
        "changes": [
            {
                "time": "2026-12-01T09:59:58Z",
                "actor": "ada",
                "step": "received",
                "version": "sha256:" + "a" * 64,
                "message": "received 2048 bytes from ada",
            },
            {
                "time": "2026-12-02T08:00:00Z",
                "actor": None,
                "step": "failed",
                "version": None,
                "message": "restart failed",
                "alias": "staging",
            },
        ],
    }
    out = io.StringIO()
    write_history(history, out)
    lines = out.getvalue().splitlines()
    # an older publisher's history names no alias: production's
    assert lines[0] == "served:" and lines[1].split()[:2] == ["production", "a" * 12]
    assert "until X" in lines[1]
    assert lines[2].split()[:2] == ["staging", "b" * 12]
    assert lines[2].endswith("until now (live)")
    assert lines[3] == "changes:"
    assert lines[4].split()[:5] == [
        "2026-12-01T09:59:58Z",
        "ada",
        "received",
        "production",
        "a" * 12,
    ]
    assert lines[5].split()[1:5] == ["mlhub", "failed", "staging", "-"]


def test_drift_prints_one_line_per_input_with_the_weak_note():
    drift = {
        "version": "sha256:" + "c" * 64,
        "since": "2026-12-06T10:00:00Z",
        "reference_rows": 5,
        "recent_rows": 300,
        "threshold": 0.2,
        "note": "the comparison is weak: 5 reference and 300 recent rows",
        "features": [
            {
                "feature": "temp",
                "kind": "number",
                "psi": 1.234,
                "ks": 0.5,
                "p_value": 1e-9,
                "reference_mean": 20.0,
                "recent_mean": 25.5,
                "drifted": True,
            },
            {"feature": "site", "kind": "category", "psi": 0.01, "drifted": False},
            {"feature": "gone", "kind": None, "psi": None, "drifted": None},
        ],
    }
    out = io.StringIO()
    write_drift(drift, out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("300 rows since 2026-12-06T10:00:00Z against 5 published")
    assert lines[1] == "note: the comparison is weak: 5 reference and 300 recent rows"
    assert lines[3].split() == [
        "temp",
        "number",
        "1.234",
        "0.500",
        "1e-09",
        "20",
        "->",
        "25.5",
        "YES",
    ]
    assert lines[4].split() == ["site", "category", "0.010", "-", "-", "-", "no"]
    assert lines[5].split() == ["gone", "-", "-", "-", "-", "-", "-"]
