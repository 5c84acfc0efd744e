"""When a canary has done worse than production long enough to be aborted by itself.

The canary front (``mlhub.deployers.canary_front``) counts each arm's requests, server errors
and latency over its window; ``CanaryCheck.verdict`` compares the canary's with production's
(pure, tested with numbers), and the publisher's watch (``ModelManager.watch_canaries``) aborts
a canary it finds wanting, with the verdict as the reason in the model's history.
"""

from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

# a canary's share of production's requests, in percent: one both arms get requests of
# (split_clients' resolution is 0.01%)
CANARY_PERCENTS = (0.01, 99.99)


class CanaryCheck(LoggingConfigurable):
    """How a running canary is judged against production (``c.CanaryCheck.*``)."""

    interval = Float(5.0, help="Seconds between checks of every running canary (default 5).").tag(
        config=True
    )

    min_requests = Integer(
        20,
        help="""Requests the canary must have answered in the front's window before it is
        judged at all (default 20): fewer say nothing yet.""",
    ).tag(config=True)

    max_error_rate_increase = Float(
        0.05,
        help="""How much higher the canary's share of failed requests (4xx and 5xx but 401
        and 403) may be than production's before it is aborted (default 0.05: five percentage
        points).""",
    ).tag(config=True)

    max_latency_ratio = Float(
        2.0,
        help="""How many times production's 95th percentile latency the canary's may be
        before it is aborted (default 2.0), when it is also ``min_latency_increase_ms``
        slower (so a 1 ms model that takes 2.5 ms is not aborted).""",
    ).tag(config=True)

    min_latency_increase_ms = Float(
        20.0,
        help="""Milliseconds the canary's 95th percentile must exceed production's by, on top
        of ``max_latency_ratio``, before latency aborts it (default 20).""",
    ).tag(config=True)

    def verdict(self, stats):
        """Why the canary should be aborted, from the front's ``stats`` (``{"stable": ...,
        "canary": ...}``), or None (good enough, or too few requests to say)."""
        canary, stable = stats["canary"], stats["stable"]
        if canary["requests"] < self.min_requests:
            return None
        base = stable["error_rate"] or 0.0
        if canary["error_rate"] > base + self.max_error_rate_increase:
            return (
                f"its error rate was {canary['error_rate']:.0%} ({canary['errors']} of "
                f"{canary['requests']} requests) against production's {base:.0%}, more than "
                f"{self.max_error_rate_increase:.0%} above (CanaryCheck.max_error_rate_increase)"
            )
        if stable["p95_ms"] is not None and canary["p95_ms"] is not None:
            slower = canary["p95_ms"] - stable["p95_ms"]
            if (
                canary["p95_ms"] > stable["p95_ms"] * self.max_latency_ratio
                and slower > self.min_latency_increase_ms
            ):
                return (
                    f"its 95th percentile latency was {canary['p95_ms']:g} ms against "
                    f"production's {stable['p95_ms']:g} ms, more than "
                    f"{self.max_latency_ratio:g} times (CanaryCheck.max_latency_ratio)"
                )
        return None
