"""The four publish steps a user sees, and how the publisher's events map onto them.

Every long step shows progress (docs/design.md). The user does not need the publisher's seven
deployment steps; they see ``bundle``, ``upload``, ``start`` and ``ready``, each with a fraction,
reported to a ``progress(step, fraction, message)`` callback: the panel's bar, or a text bar.
"""

import sys

from mlhub.steps import DEPLOY_STEPS

STEPS = ("bundle", "upload", "start", "ready")

# publisher event step (mlhub.steps) -> (our step, fraction of it done)
EVENT_STEPS = dict(
    zip(
        DEPLOY_STEPS,
        [
            ("start", 0.1),
            ("start", 0.4),
            ("start", 0.7),
            ("ready", 0.25),
            ("ready", 0.5),
            ("ready", 0.75),
            ("ready", 1.0),
        ],
        strict=True,
    )
)


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


class PublisherProgress:
    """Adapts ``PublisherClient`` progress ``(step, message, fraction)`` to the four steps.

    Byte progress is thinned to whole percents: a widget update per 8 KiB read would flood
    the notebook's connection for a large model.
    """

    def __init__(self, report):
        self.report = report
        self.finished = False
        self._sent = -1.0

    def __call__(self, step, message, fraction):
        if step == "upload":
            if fraction - self._sent >= 0.01 or (fraction >= 1 > self._sent):
                self._sent = fraction
                self.report("upload", fraction, message)
        elif step in EVENT_STEPS:
            ours, done = EVENT_STEPS[step]
            self.report(ours, done, message or step)
            self.finished = step == "done"
