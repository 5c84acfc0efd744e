"""The serving runtime's settings, read once from the environment.

Every limit is a setting (docs/design.md: "never hard-coded"). The launcher turns its command-line
flags into these same environment variables before it execs uWSGI, so the WSGI app, loaded in
the uWSGI master, reads one source of truth.
"""

import os
from dataclasses import dataclass

_TRUE = ("on", "true", "1", "yes")
_FALSE = ("off", "false", "0", "no")


class SettingsError(ValueError):
    """An environment variable has a value the runtime cannot use."""


def _flag(env, key, default):
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{key}={raw!r} is not valid: use 'on' or 'off'")


def _int(env, key, default, minimum=1):
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{key}={value} is too small: the minimum is {minimum}")
    return value


def _fraction(env, key, default):
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw in _FALSE:
        return 0.0
    if raw in _TRUE:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a number") from None
    if not 0 <= value <= 1:
        raise SettingsError(f"{key}={value} is not a fraction between 0 and 1")
    return value


def _choice(env, key, default, allowed):
    raw = env.get(key, "").strip().lower() or default
    if raw not in allowed:
        raise SettingsError(f"{key}={raw!r} is not valid: use one of {', '.join(allowed)}")
    return raw


def normalize_prefix(prefix):
    """``models/alice/iris/`` -> ``/models/alice/iris``; empty or ``/`` -> ``""`` (no prefix)."""
    prefix = (prefix or "").strip().strip("/")
    return f"/{prefix}" if prefix else ""


@dataclass(frozen=True)
class Settings:
    """What one serving instance needs to know; see the README for each variable."""

    bundle: str
    url_prefix: str = ""
    owner: str | None = None
    version: str | None = None
    auth: bool = True
    access_file: str | None = None
    hub_api_url: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    request_timeout: int = 60
    workers: int = 2
    header_buffer_bytes: int = 32 * 1024
    lazy_apps: str = "auto"
    request_log: str = "errors"
    request_log_rate: int = 20
    batching: bool = False
    batch_max_size: int = 64
    batch_max_wait_ms: int = 2
    threads: int = 1
    inference_log_sample: float = 0.0
    inference_log_url: str | None = None
    inference_log_buffer: int = 10_000
    inference_log_flush_seconds: int = 2

    @classmethod
    def from_env(cls, env=None):
        """Read the settings from ``env`` (default ``os.environ``); raise ``SettingsError``."""
        env = os.environ if env is None else env
        bundle = env.get("MLHUB_BUNDLE", "").strip()
        if not bundle:
            raise SettingsError("MLHUB_BUNDLE is not set: point it at a model bundle directory")
        batching = _flag(env, "MLHUB_BATCHING", False)
        batch_max_size = _int(env, "MLHUB_BATCH_MAX_SIZE", cls.batch_max_size)
        return cls(
            bundle=bundle,
            url_prefix=normalize_prefix(env.get("MLHUB_URL_PREFIX")),
            owner=env.get("MLHUB_MODEL_OWNER") or None,
            version=env.get("MLHUB_MODEL_VERSION") or None,
            auth=_flag(env, "MLHUB_AUTH", True),
            access_file=env.get("MLHUB_ACCESS_FILE") or None,
            hub_api_url=(env.get("JUPYTERHUB_API_URL") or "").rstrip("/") or None,
            max_body_bytes=_int(env, "MLHUB_MAX_BODY_BYTES", cls.max_body_bytes),
            request_timeout=_int(env, "MLHUB_REQUEST_TIMEOUT", cls.request_timeout),
            workers=_int(env, "MLHUB_WORKERS", cls.workers),
            header_buffer_bytes=_int(
                env, "MLHUB_HEADER_BUFFER_BYTES", cls.header_buffer_bytes, minimum=4096
            ),
            lazy_apps=_choice(env, "MLHUB_LAZY_APPS", cls.lazy_apps, ("auto", "on", "off")),
            request_log=_choice(
                env, "MLHUB_REQUEST_LOG", cls.request_log, ("off", "errors", "all")
            ),
            request_log_rate=_int(env, "MLHUB_REQUEST_LOG_RATE", cls.request_log_rate),
            batching=batching,
            batch_max_size=batch_max_size,
            batch_max_wait_ms=_int(env, "MLHUB_BATCH_MAX_WAIT_MS", cls.batch_max_wait_ms, 0),
            # A worker can only batch requests it holds at once: one thread per batch slot.
            threads=_int(env, "MLHUB_THREADS", batch_max_size if batching else 1),
            inference_log_sample=_fraction(env, "MLHUB_INFERENCE_LOG", 0.0),
            inference_log_url=env.get("MLHUB_INFERENCE_LOG_URL") or None,
            inference_log_buffer=_int(env, "MLHUB_INFERENCE_LOG_BUFFER", cls.inference_log_buffer),
            inference_log_flush_seconds=_int(
                env, "MLHUB_INFERENCE_LOG_FLUSH_SECONDS", cls.inference_log_flush_seconds
            ),
        )
