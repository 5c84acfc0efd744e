"""The Models page: the publisher's home in the browser, at its service URL.

A user reaches it from the hub's Services menu and logs in with the hub (OAuth, no token to
copy). The pages are rendered here, with the hub's own stylesheet and its light and dark modes
(``<hub>/static/css/style.min.css``, Bootstrap 5), and every action is an HTML form: listing,
rollback, aliases, canary, shadow, scale, API keys, sharing and a Try it form that calls the
model as the user work without JavaScript. A small script (``static/models.js``) adds copy
buttons and a log that follows.

The pages call the same ``ModelManager`` methods and the same authorization (``auth``) as the
REST API, so a page can do exactly what its user's API calls could. Forms carry the hub's xsrf
token; a cookie-authenticated POST without it is refused. Errors render as a page saying what
happened and what to do, never a stack trace.
"""

import json
import os
from pathlib import Path

import jinja2
from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from mlhub.errors import BadRequest, MlhubError
from mlhub.publisher.auth import (
    MANAGE,
    READ,
    Caller,
    authorized_model,
    may,
    require_api_scope,
)
from mlhub.snippets import all_snippets, example_rows

HERE = Path(__file__).parent
LOG_LINES = 200  # lines of the model's log a page shows
INFERENCE_ROWS = 20  # newest rows of the inference log a page shows
SHADOW_ROWS = 1000  # newest compared rows the page's shadow summary counts (the API has all)
HISTORY_ROWS = 50  # newest served intervals and changes a page shows (the API has them all)
# the model page's forms (``ModelActionPage``)
ACTIONS = (
    "rollback",
    "alias",
    "unalias",
    "canary",
    "canary-promote",
    "canary-abort",
    "shadow",
    "shadow-stop",
    "scale",
    "keys",
    "revoke",
    "share",
    "try",
    "inference-log",
    "sleep",
)
# what a redirect after a form says happened (a code, so no text of the URL reaches the page)
DONE = {
    "rollback": "Rollback started: the version switches once it is ready (see Events).",
    "alias": "The alias moves once its version is ready (see Events); its URL keeps serving.",
    "aliased": "Nothing to do: the alias serves that version already.",
    "unaliased": "The alias was deleted and its processes stopped.",
    "canary": "The canary starts in processes of its own, then takes its share (see Events).",
    "canary-share": "The canary's share changed: it applies to the next requests.",
    "promoted": "Promotion started: production moves to the canary's version (see Events).",
    "aborted": "The canary was aborted: every request goes to production again.",
    "shadow": "The shadow starts in processes of its own, then gets its share (see Events).",
    "shadow-stopped": "The shadow was stopped; production answers as before.",
    "scale": "Scaling started: see Events.",
    "scaled": "Nothing to do: the model already runs that many replicas.",
    "revoked": "The key was revoked: calls with it are refused from now on.",
    "shared": "Sharing saved: those users and groups may call the model and see this page.",
    "logging": "The inference log's setting is being applied (a rolling restart): see Events.",
    "logged": "Nothing to do: the inference log already keeps that share of the requests.",
    "sleep": "Saved: the model sleeps as it says now (no restart).",
}


def page_templates():
    """The Jinja environment of the pages (autoescaped)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["duration"] = duration
    return env


def duration(seconds):
    """Seconds as people say them: "15 minutes", "1 hour 30 minutes", "45 seconds"."""
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts[:2]) or "0 seconds"


def newest(history, rows):
    """``history`` with its newest ``rows`` served intervals and changes, newest first, and how
    many older ones the page leaves to ``mlhub models history``."""
    served, changes = history["served"][::-1], history["changes"][::-1]
    return {
        "served": served[:rows],
        "changes": changes[:rows],
        "older": max(len(served) - rows, 0) + max(len(changes) - rows, 0),
    }


class PageHandler(HubOAuthenticated, web.RequestHandler):
    """A page for a logged-in hub user; typed errors become a readable error page."""

    def initialize(self):
        self.hub_auth = self.settings["hub_auth"]

    @property
    def manager(self):
        return self.settings["manager"]

    @property
    def prefix(self):
        return self.settings["service_prefix"]

    def caller(self):
        caller = Caller.from_hub_model(self.current_user)
        require_api_scope(caller)
        return caller

    def model_for(self, action, user, name):
        """``(caller, model)`` once the caller may ``action`` it (as the API decides)."""
        caller = self.caller()
        return caller, authorized_model(self.manager, caller, action, user, name)

    def model_url(self, model):
        return f"{self.prefix}models/{model.owner}/{model.name}"

    async def show_model(self, user, name, new_key=None, status=200, tried=None):
        """The model page (``new_key``: a key just minted, its secret shown this once;
        ``tried``: the request the Try it form sent and the model's answer)."""
        caller, model = self.model_for(READ, user, name)
        manage = may(caller, MANAGE, model)
        view = self.manager.view(model)
        live = next((v for v in view["versions"] if v["id"] == view["current_version"]), None)
        example = (live or {}).get("example")
        rows = example_rows(example, (live or {}).get("signature"))
        self.render_page(
            "model.html",
            status=status,
            model=view,
            live=live,
            manage=manage,
            keys=[k.to_dict() for k in model.api_keys] if manage else [],
            new_key=new_key,
            events=list(reversed(self.manager.events(model)))[:30],
            history=newest(self.manager.history(model), HISTORY_ROWS),
            canary=self.manager.canary(model) if view["canary"] else None,
            shadow=await self.manager.shadow(model, limit=SHADOW_ROWS)
            if manage and view["shadow"]
            else None,
            log=await self.manager.logs(model, LOG_LINES) if manage else "",
            **(await self.insight(model) if manage else {}),
            done=DONE.get(self.get_query_argument("done", "")),
            snippets=all_snippets(
                view["predict_url"],
                view["name"],
                example,
                new_key["key"] if new_key else None,
                (live or {}).get("signature"),
            ),
            max_workers=self.manager.max_workers,
            tried=tried,
            try_body=tried["body"] if tried else json.dumps({"instances": rows or []}, indent=1),
            page_url=self.model_url(model),
            xsrf=self.xsrf_form_value(),
        )

    async def insight(self, model):
        """The inference log's newest rows and the last day's drift, for whoever manages
        ``model`` (the rows are its callers' data)."""
        if not model.current_version:
            return {"inferences": [], "drift": None}
        rows = await self.manager.inferences(model, limit=INFERENCE_ROWS)
        drift = await self.manager.drift(model) if rows else None  # the last day's
        return {"inferences": list(reversed(rows)), "drift": drift}

    def xsrf_form_value(self):
        """The hub's xsrf token for this page's forms and scripts."""
        token = self.xsrf_token
        return token.decode() if isinstance(token, bytes) else token

    def render_page(self, template, status=200, **values):
        """Answer with ``template`` rendered with the page frame's values and ``values``."""
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/")
        frame = {
            "prefix": self.prefix,
            "hub_static": base + "/hub/static/",  # the hub's stylesheet: the same origin
            "hub_url": base + "/hub/",
            "user": values.pop("user", None) or self.current_user,
        }
        self.finish(
            self.settings["page_templates"].get_template(template).render(**frame, **values)
        )

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, MlhubError):
            status, message = exc.status, exc.message
        elif isinstance(exc, web.HTTPError):
            status, message = status_code, exc.log_message or self._reason
        else:
            status = 500
            message = "Something went wrong in the publisher; its log has the details."
        self.render_page("error.html", status, code=status, message=message)

    def log_exception(self, typ, value, tb):
        if isinstance(value, MlhubError):
            self.settings["log"].warning("page %s: %s", self.request.path, value.message)
        else:
            super().log_exception(typ, value, tb)


class ModelsPage(PageHandler):
    """``GET <prefix>``: the caller's models, those shared with them (an admin: everyone's)."""

    @web.authenticated
    def get(self):
        caller = self.caller()
        models = [m for m in self.manager.all_models() if may(caller, READ, m)]
        models.sort(key=lambda m: (m.owner != caller.name, m.owner, m.name))
        self.render_page(
            "models.html",
            caller=caller,
            models=[self.manager.view(m) for m in models],
            page_url=lambda view: f"{self.prefix}models/{view['owner']}/{view['name']}",
        )


class ModelPage(PageHandler):
    """``GET <prefix>models/<user>/<name>``: one model, its versions, keys, events and log."""

    @web.authenticated
    async def get(self, user, name):
        await self.show_model(user, name)


class ModelActionPage(PageHandler):
    """The model page's forms: ``POST <prefix>models/<user>/<name>/<action>``."""

    @web.authenticated
    async def post(self, user, name, action):
        # trying the model is calling it, which readers may; the rest changes it
        caller, model = self.model_for(READ if action == "try" else MANAGE, user, name)
        done = None
        if action == "rollback":
            await self.manager.rollback(caller, model, self.get_body_argument("version"))
            done = "rollback"
        elif action == "alias":
            alias = self.get_body_argument("alias", "").strip()
            answer = await self.manager.set_alias(
                caller, model, alias, self.get_body_argument("version", "")
            )
            done = "alias" if answer["event_id"] is not None else "aliased"
        elif action == "canary":
            answer = await self.manager.start_canary(
                caller,
                model,
                self.get_body_argument("version", ""),
                self.get_body_argument("percent", ""),
            )
            done = "canary" if answer["event_id"] is not None else "canary-share"
        elif action == "canary-promote":
            await self.manager.promote_canary(caller, model)
            done = "promoted"
        elif action == "canary-abort":
            await self.manager.end_canary(caller, model)
            done = "aborted"
        elif action == "shadow":
            await self.manager.start_shadow(
                caller,
                model,
                self.get_body_argument("version", ""),
                self.get_body_argument("percent", ""),
            )
            done = "shadow"
        elif action == "shadow-stop":
            await self.manager.stop_shadow(caller, model)
            done = "shadow-stopped"
        elif action == "unalias":
            await self.manager.delete_alias(caller, model, self.get_body_argument("alias", ""))
            done = "unaliased"
        elif action == "scale":
            answer = await self.manager.scale(caller, model, self.int_field("replicas"))
            done = "scale" if answer["event_id"] is not None else "scaled"
        elif action == "inference-log":
            sample = self.get_body_argument("percent", "0").strip() or "0"
            try:
                sample = float(sample) / 100
            except ValueError:
                raise BadRequest(
                    f"the share of requests to keep is a percentage, got {sample!r}",
                    {"field": "percent"},
                ) from None
            answer = await self.manager.configure(caller, model, inference_log=sample)
            done = "logging" if answer["event_id"] is not None else "logged"
        elif action == "sleep":
            await self.manager.configure(caller, model, sleep_after=self.sleep_field())
            done = "sleep"
        elif action == "keys":
            key = await self.manager.create_key(
                caller, model, self.get_body_argument("description", "")
            )
            # the secret is shown once, on this answer: never in a URL, never stored
            await self.show_model(user, name, new_key=key, status=201)
            return
        elif action == "revoke":
            await self.manager.delete_key(caller, model, self.get_body_argument("key_id"))
            done = "revoked"
        elif action == "try":
            await self.try_it(user, name, model)
            return
        elif action == "share":
            users, groups = (self.names_field(f) for f in ("users", "groups"))
            await self.manager.share(caller, model, users, groups)
            done = "shared"
        else:
            raise web.HTTPError(404)
        self.redirect(f"{self.model_url(model)}?done={done}")

    async def try_it(self, user, name, model):
        """Send the form's request body to the model as this user; show its answer."""
        body = self.get_body_argument("body", "")
        try:
            json.loads(body)
        except ValueError as exc:  # shown with the form, the text kept to be fixed
            status, answer = 400, f"not sent: the request is not valid JSON ({exc})"
        else:
            token = self.hub_auth.get_token(self)
            status, answer = await self.manager.call_model(
                model, "POST", "/v1/predict", token, body.encode(), wake=True
            )
            try:
                answer = json.dumps(json.loads(answer), indent=1)
            except ValueError:
                pass
        await self.show_model(user, name, tried={"body": body, "status": status, "answer": answer})

    def names_field(self, name):
        """A form field of names separated by commas or spaces, as a list."""
        return [n for n in self.get_body_argument(name, "").replace(",", " ").split() if n]

    def sleep_field(self):
        """The Sleep form: ``mode`` default (None), never (0) or after ``minutes``."""
        mode = self.get_body_argument("mode", "")
        if mode == "default":
            return None
        if mode == "never":
            return 0
        if mode != "after":
            raise BadRequest(
                f"mode must be default, never or after, got {mode!r}", {"field": "mode"}
            )
        raw = self.get_body_argument("minutes", "").strip()
        try:
            minutes = float(raw)
        except ValueError:
            raise BadRequest(
                f"minutes must be a number, got {raw!r}", {"field": "minutes"}
            ) from None
        if not minutes > 0:
            raise BadRequest(
                "minutes must be above 0 (choose never to keep the model warm)",
                {"field": "minutes"},
            )
        return round(minutes * 60)

    def int_field(self, name):
        raw = self.get_body_argument(name, "")
        try:
            return int(raw)
        except ValueError:
            raise BadRequest(
                f"{name} must be a whole number, got {raw!r}", {"field": name}
            ) from None


def page_routes(base):
    """The pages' routes below the service prefix ``base`` (without its trailing slash)."""
    model = base + r"/models/(?P<user>[^/]+)/(?P<name>[^/]+)"
    return [
        (base + "/?", ModelsPage),
        (model + "/?", ModelPage),
        (model + rf"/(?P<action>{'|'.join(ACTIONS)})", ModelActionPage),
        (base + r"/static/(.*)", web.StaticFileHandler, {"path": str(HERE / "static")}),
    ]
