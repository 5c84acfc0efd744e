"""The HTTP plumbing of the tests' stand-ins: small servers that play a service a test does not
run for real (the hub's user API, a model server, the publisher's bundle endpoint), each on a
free port of ``host`` in a daemon thread, answering through ``StandInHandler.reply``.

What a stand-in answers is the test's; this module only serves it.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (the test's output stays readable)."""

    def reply(self, status, body=b"", content_type=None):
        """Answer ``status`` with ``body`` (bytes) and its length, and ``content_type`` if
        given."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class StandInServer:
    """Serves ``handler`` (a ``StandInHandler`` class) on ``host`` at a free port until
    ``close`` (or the end of a ``with`` block); ``url`` is ``http://host:port`` (no slash)."""

    def __init__(self, handler, host="127.0.0.1"):
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
