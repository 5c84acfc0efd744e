"""``mlhub models`` commands' own logic (the README's commands run against a live hub in
tests/component/test_readme.py)."""

import io

from mlhub.cli_models import follow_logs


def test_logs_follow_prints_each_new_line_once():
    class Growing:
        """A publisher whose model log grows between polls (a fake client for this unit test)."""

        def __init__(self):
            self.lines = [f"line {i}\n" for i in range(5)]

        def logs(self, name, tail):
            text = "".join(self.lines[-tail:])
            self.lines += [f"line {len(self.lines)}\n", f"line {len(self.lines) + 1}\n"]
            return text

    out = io.StringIO()
    follow_logs(Growing(), "iris", 3, out, sleep=lambda s: None, polls=3)
    assert out.getvalue() == "".join(f"line {i}\n" for i in range(2, 9))
