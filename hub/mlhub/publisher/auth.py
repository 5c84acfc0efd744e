"""Who is calling, and what may they do: the publisher's authorization decisions.

Identity comes from JupyterHub (``HubOAuth`` resolves a token or the OAuth cookie to the hub's
user model, which carries the *token's* scopes). The decisions themselves are pure functions of
that model, so they are unit-tested without a hub:

- every API call needs ``custom:mlhub:models`` (manage your own models) or ``custom:mlhub:admin``;
- changes (publish, rollback, scale, delete, keys) need the owner or an admin;
- reading a model (and calling its endpoint) is also allowed to the users and groups it is
  shared with;
- an admin is a token with ``custom:mlhub:admin``, or a hub admin's token carrying
  ``admin:users`` (so a hub admin's narrowly scoped token stays narrow).
"""

from dataclasses import dataclass, field

from jupyterhub.services.auth import check_scopes

from mlhub.errors import Forbidden

SCOPE_MODELS = "custom:mlhub:models"
SCOPE_ADMIN = "custom:mlhub:admin"

READ = "read"
MANAGE = "manage"


@dataclass(frozen=True)
class Caller:
    """The identified user (or service) behind a request."""

    name: str
    kind: str = "user"
    scopes: frozenset = field(default_factory=frozenset)
    groups: frozenset = field(default_factory=frozenset)
    hub_admin: bool = False

    @classmethod
    def from_hub_model(cls, model):
        """Build from the model ``HubAuth.get_user`` returns (``/hub/api/user`` for the token)."""
        return cls(
            name=model["name"],
            kind=model.get("kind", "user"),
            scopes=frozenset(model.get("scopes", ())),
            groups=frozenset(model.get("groups") or ()),
            hub_admin=bool(model.get("admin")),
        )

    @property
    def is_admin(self):
        if check_scopes(SCOPE_ADMIN, self.scopes):
            return True
        return self.hub_admin and bool(check_scopes("admin:users", self.scopes))

    def to_dict(self):
        return {"name": self.name, "kind": self.kind, "admin": self.is_admin}


def require_api_scope(caller):
    """Refuse tokens that were not granted the publisher's scopes."""
    if caller.is_admin or check_scopes(SCOPE_MODELS, caller.scopes):
        return
    raise Forbidden(
        f"the token of {caller.kind} {caller.name!r} lacks the scope {SCOPE_MODELS!r}; "
        "create a token with it at <hub>/hub/token (the default user role has it)",
        {"scope": SCOPE_MODELS},
    )


def authorize(caller, action, owner, shared_with=(), shared_groups=()):
    """Raise ``Forbidden`` unless ``caller`` may ``action`` (READ or MANAGE) ``owner``'s model."""
    require_api_scope(caller)
    if caller.is_admin or (caller.kind == "user" and caller.name == owner):
        return
    shared = caller.name in shared_with or bool(caller.groups & set(shared_groups))
    if action == READ and caller.kind == "user" and shared:
        return
    verb = "read" if action == READ else "change"
    raise Forbidden(
        f"{caller.name!r} may not {verb} models of {owner!r}: only the owner and admins can",
        {"owner": owner, "caller": caller.name},
    )


def authorized_model(manager, caller, action, owner, name):
    """``owner``'s model ``name`` once ``caller`` may ``action`` it. Authorization comes
    first, so someone else's namespace answers 403 whether or not the model exists; the owner
    and admins get the ``NotFound`` of a model that does not."""
    model = manager.find(owner, name)
    if model is None:
        authorize(caller, action, owner)
        manager.get(owner, name)  # raises the NotFound
    authorize(caller, action, owner, model.shared_with, model.shared_groups)
    return model


def may(caller, action, model):
    """Whether ``caller`` may ``action`` a stored ``model`` (``authorize``, as a yes or no)."""
    try:
        authorize(caller, action, model.owner, model.shared_with or (), model.shared_groups or ())
    except Forbidden:
        return False
    return True


def visible_owner(caller, requested):
    """The owner whose models ``GET /api/models`` lists: yourself, or anyone for admins."""
    require_api_scope(caller)
    if requested is None:
        return None if caller.is_admin else caller.name
    if requested != caller.name and not caller.is_admin:
        raise Forbidden(
            f"{caller.name!r} may only list their own models (?user= is for admins)",
            {"user": requested},
        )
    return requested
