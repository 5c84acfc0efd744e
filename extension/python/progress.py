"""The four publish steps a user sees, and how the publisher's events map onto them.

Every long step shows progress (DESIGN.md). The user does not need the publisher's seven
deployment steps; they see ``bundle``, ``upload``, ``start`` and ``ready``, each with a fraction,
reported to a ``progress(step, fraction, message)`` callback: the panel's bar, or a text bar.
"""

import sys

STEPS = ("bundle", "upload", "start", "ready")

# publisher event step -> (our step, fraction of it done); docs/internals.md, "Event"
EVENT_STEPS = {
    "received": ("start", 0.1),
    "unpacked": ("start", 0.4),
    "starting": ("start", 0.7),
    "ready": ("ready", 0.25),
    "switched": ("ready", 0.5),
    "drained": ("ready", 0.75),
    "done": ("ready", 1.0),
}


def overall(step, fraction):
    """Fraction of the whole publish done when ``step`` is ``fraction`` done."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    return (STEPS.index(step) + fraction) / len(STEPS)


class TextProgress:
    """One self-rewriting line, for ``mlhub.publish`` called outside the panel.

    ``\\r`` rewrites the line in a terminal and in a notebook's output alike.
    """

    def __init__(self, stream=None, width=24):
        self.stream = stream or sys.stdout
        self.width = width
        self._last = 0

    def __call__(self, step, fraction, message):
        filled = round(overall(step, fraction) * self.width)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {step:<6} {message}"
        self.stream.write("\r" + line.ljust(self._last))
        self._last = len(line)
        if step == STEPS[-1] and fraction >= 1:
            self.stream.write("\n")
            self._last = 0
        self.stream.flush()
