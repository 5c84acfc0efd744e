"""What a model's log shows its owner (the Models page, ``mlhub models logs``, the tail in a
failed publish's message): the serving processes' output without the banner uWSGI writes as
each process starts.

That banner is some 30 lines a model's owner cannot act on: uWSGI's build and the machine's
limits, "running as root" (the embedded mode's single-user root setup), and "WSGI app 0 ready
in N seconds", counted from the fork server's start for a forked process rather than from the
model's load (mlhub's own "loaded model ... in 0.003 s" line says that). What mlhub and the
model write (the load, the request outcomes, tracebacks) and uWSGI's lines about workers dying,
harakiri and shutdown are kept. The log file itself keeps every line, for whoever runs the machine.
"""

import re

_BANNER = re.compile(
    r"\s*(?:"
    + "|".join(
        [
            r"\*\*\* Starting uWSGI ",
            r"compiled with version: ",
            r"os: Linux",
            r"nodename: ",
            r"machine: ",
            r"clock source: ",
            r"detected (?:number of CPU cores|binary path|max file descriptor number)",
            r"current working directory: ",
            r"!!! no internal routing support",
            r"uWSGI running as root",
            r"\*\*\* WARNING: you are running uWSGI as root",
            r"\*\*\* WARNING: you have enabled harakiri without post buffering",
            r"your (?:processes number limit|memory page size|server socket listen backlog"
            r"|mercy for graceful operations)",
            r"lock engine: ",
            r"thunder lock: ",
            r"sharedarea \d+ created",
            r"uWSGI http bound on ",
            r"uwsgi socket \d+ bound to ",
            r"Python version: ",
            r"PEP 405 virtualenv detected",
            r"Set PythonHome to ",
            r"Python main interpreter initialized",
            r"--- Python VM already initialized ---",
            r"python threads support enabled",
            r"mapped \d+ bytes",
            r"\*\*\* Operational MODE: ",
            r"\*\*\* uWSGI is running in multiple interpreter mode",
            r"WSGI app \d+ \(mountpoint='[^']*'\) ready in \d+ seconds",
            r"spawned uWSGI (?:master|worker|http)",
            r'running "unix_signal:15 gracefully_kill_them_all" \(master-start\)',
        ]
    )
    + ")"
)


def shown(line):
    """Whether the owner's view of the log keeps ``line``."""
    return _BANNER.match(line) is None


def readable(text, tail):
    """The last ``tail`` lines of ``text`` that ``shown`` keeps."""
    lines = [line for line in text.splitlines(keepends=True) if shown(line)]
    return "".join(lines[-tail:]) if tail > 0 else ""
