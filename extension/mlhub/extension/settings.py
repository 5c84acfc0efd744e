"""Where the publisher is and who we are: the one place that reads mlhub's environment.

The hub gives every user server (and so every kernel) ``MLHUB_PUBLISHER_URL``,
``MLHUB_PUBLIC_URL``, ``JUPYTERHUB_API_TOKEN`` and ``JUPYTERHUB_USER`` (docs/internals.md). The
server extension reads them as traitlets defaults so a ``jupyter_server_config`` can override
them; the kernel-side client uses the same class without any config, so both sides agree on the
names and on the message when something is missing.
"""

import os
from urllib.parse import quote

from traitlets import Float, Unicode, default, validate
from traitlets.config import Configurable

from mlhub.extension.errors import NotConfigured

OUTSIDE_MLHUB = (
    "not running inside mlhub: {missing} {verb} not set; open this notebook from an mlhub hub "
    "(`mlhub up`), or set MLHUB_PUBLISHER_URL, JUPYTERHUB_API_TOKEN and JUPYTERHUB_USER "
    "to reach a publisher"
)


class MlhubExtension(Configurable):
    """Settings of the notebook side of mlhub (``c.MlhubExtension.*`` in jupyter_server config)."""

    publisher_url = Unicode(
        config=True,
        help="""Base URL of the mlhub publisher service, ending in '/'.

        Default: the MLHUB_PUBLISHER_URL environment variable the hub gives each user server,
        e.g. 'http://127.0.0.1:8000/services/mlhub-publisher/'. Empty means not inside mlhub.
        """,
    )

    @default("publisher_url")
    def _publisher_url_default(self):
        return os.environ.get("MLHUB_PUBLISHER_URL", "")

    @validate("publisher_url", "public_url")
    def _trailing_slash(self, proposal):
        url = proposal["value"]
        return url if not url or url.endswith("/") else url + "/"

    api_token = Unicode(
        config=True,
        help="""Token sent to the publisher as 'Authorization: token ...'.

        Default: JUPYTERHUB_API_TOKEN, the token the hub gives this server (its 'server' role
        carries the custom:mlhub:models scope, so it may publish the owner's models).
        """,
    )

    @default("api_token")
    def _api_token_default(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    user = Unicode(
        config=True,
        help="""The owner of the models this server publishes (the path part /api/models/<user>/).

        Default: JUPYTERHUB_USER, the hub user who owns this server.
        """,
    )

    @default("user")
    def _user_default(self):
        return os.environ.get("JUPYTERHUB_USER", "")

    public_url = Unicode(
        config=True,
        help="""Public URL of the hub, ending in '/', used to show endpoint URLs.

        Default: MLHUB_PUBLIC_URL, e.g. 'http://127.0.0.1:8000/'.
        """,
    )

    @default("public_url")
    def _public_url_default(self):
        return os.environ.get("MLHUB_PUBLIC_URL", "")

    request_timeout = Float(
        30.0,
        config=True,
        help="Seconds to wait for the publisher to answer an ordinary request (default 30).",
    )

    upload_timeout = Float(
        600.0,
        config=True,
        help="""Seconds allowed for uploading one bundle to the publisher (default 600).

        Large models on slow links need more; the publisher applies its own limit too.
        """,
    )

    def require(self):
        """Raise ``NotConfigured`` naming every missing setting; return ``self`` otherwise."""
        missing = [
            env
            for env, value in (
                ("MLHUB_PUBLISHER_URL", self.publisher_url),
                ("JUPYTERHUB_API_TOKEN", self.api_token),
                ("JUPYTERHUB_USER", self.user),
            )
            if not value
        ]
        if missing:
            raise NotConfigured(
                OUTSIDE_MLHUB.format(
                    missing=", ".join(missing), verb="is" if len(missing) == 1 else "are"
                ),
                {"missing": missing},
            )
        return self

    def api_url(self, *parts):
        """The publisher REST URL for path segments ``parts`` (each quoted: users may be emails)."""
        return self.publisher_url + "/".join(("api", *(quote(str(p), safe="") for p in parts)))

    @property
    def models_url(self):
        """Where this user's models are served (``<public>/models/<user>/``), None if unknown."""
        if not (self.public_url and self.user):
            return None
        return f"{self.public_url}models/{self.user}/"
