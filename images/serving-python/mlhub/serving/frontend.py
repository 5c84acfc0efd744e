"""nginx in front of a model's server processes, and the supervisor that runs them together.

Shared by the serving-python image (nginx -> uWSGI over a unix socket, ``container.py``) and the
R runtime (nginx -> N plumber processes, ``mlhub.serving_r.launch``, which both the serving-r
image and the embedded mode's R serve command run). nginx holds slow clients and buffers bodies,
refuses a body over ``MLHUB_MAX_BODY_BYTES`` with the contract's JSON 413 before a server sees
it, and answers a JSON 503 while no server answers.

Standard library only: the serving-r image has Debian's ``python3`` and nothing else.
"""

import os
import random
import signal
import socket
import subprocess
from pathlib import Path

TEMP_KINDS = ("client_body", "proxy", "uwsgi", "fastcgi", "scgi")


def free_port(host):
    """A port free on ``host`` now, below the kernel's ephemeral range.

    The server binds it a moment later. A port from ``bind(0)`` lies in the ephemeral range,
    where any client socket the machine opens meanwhile may take it; below that range ports are
    only handed to whoever asks for one by number. (A server that still loses the race fails to
    bind and says "Address already in use"; its starter tries another port.)
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # everything below the range is taken: let the kernel pick
        s.bind((host, 0))
        return s.getsockname()[1]


def nginx_conf(settings, *, listen, run_dir, location, upstream=(), user=None, writer):
    """nginx's whole configuration for one serving instance (pure; tested as text).

    ``listen``: what nginx's ``listen`` takes (``8080``, ``127.0.0.1:41234``); ``location``:
    the directives that pass a request on (``uwsgi_pass ...`` or ``proxy_pass http://backend``);
    ``upstream``: the ``host:port`` servers of the ``backend`` group, if ``location`` uses it
    (``max_fails=0``: a server that refused a connection is tried again at the next request,
    not shunned for 10 s); ``user``: the workers' user, for an nginx started as root (else its
    workers run as ``nobody``, who cannot write ``run_dir``); ``writer``: who wrote it.
    """
    timeout = settings.request_timeout
    limit = settings.max_body_bytes
    too_large = (
        f'{{"error": "the request body is larger than the limit of {limit} bytes: send fewer '
        f'rows per request", "code": "payload_too_large", "detail": {{"limit": {limit}}}}}'
    )
    starting = (
        '{"error": "the model server is starting or restarting: retry shortly", '
        '"code": "not_ready", "detail": null}'
    )
    temp = "\n".join(f"    {kind}_temp_path {run_dir}/{kind};" for kind in TEMP_KINDS)
    group = ""
    if upstream:
        servers = "".join(f"        server {server} max_fails=0;\n" for server in upstream)
        group = f"    upstream backend {{\n{servers}    }}\n"
    directives = "".join(f"            {line}\n" for line in location)
    head = f"user {user};\n" if user else ""
    return f"""\
# Written by {writer} at start; the settings come from the environment.
{head}worker_processes 1;
pid {run_dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    server_tokens off;
{temp}
    client_max_body_size {limit};
    client_body_buffer_size 1m;
    large_client_header_buffers 4 {settings.header_buffer_bytes};
    client_body_timeout {timeout}s;
    send_timeout {timeout}s;
    keepalive_timeout 75s;
{group}    server {{
        listen {listen};
        location / {{
{directives}        }}
        error_page 413 @too_large;
        location @too_large {{
            default_type application/json;
            return 413 '{too_large}';
        }}
        error_page 502 504 @starting;
        location @starting {{
            default_type application/json;
            return 503 '{starting}';
        }}
    }}
}}
"""


def nginx_argv(nginx, conf):
    """nginx in the foreground with ``conf``, logging to stderr from its first line."""
    return [nginx, "-e", "stderr", "-c", str(conf), "-g", "daemon off;"]


class Supervisor:
    """Runs a serving instance's processes; when one exits (or ``stop`` is called, e.g. on
    SIGTERM) it stops the others, and ``wait`` returns once all are gone.

    Each child gets its own stop signal: nginx's SIGQUIT finishes open requests, uWSGI's
    SIGTERM drains its workers, plumber's ends the R process.
    """

    def __init__(self, log):
        self.log = log
        self.children = {}
        self.signals = {}
        self.stopping = False

    def start(self, name, argv, env, stop_signal=signal.SIGTERM):
        self.children[name] = subprocess.Popen(argv, env=env)
        self.signals[name] = stop_signal
        self.log(f"started {name} (pid {self.children[name].pid})")
        return self.children[name]

    def stop(self, *_):
        if self.stopping:
            return
        self.stopping = True
        for name, child in self.children.items():
            if child.poll() is None:
                child.send_signal(self.signals[name])

    def exited(self):
        """The name of a child that has exited, or None."""
        for name, child in self.children.items():
            if child.poll() is not None:
                return name
        return None

    def wait(self):
        """Reap every child (as PID 1, orphans too); return 1 if one exited on its own, else 0."""
        code = 0
        if not self.stopping and (name := self.exited()):
            self.log(f"{name} exited with {self.children[name].returncode}; stopping the others")
            code = 1
            self.stop()
        while any(c.returncode is None for c in self.children.values()):
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            for name, child in self.children.items():
                if child.pid == pid:
                    child.returncode = os.waitstatus_to_exitcode(status)
                    if not self.stopping:
                        self.log(f"{name} exited with {child.returncode}; stopping the others")
                        code = 1
                    self.stop()
        return code
