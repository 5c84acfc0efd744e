"""Spawner profiles: YAML files, their schema, and what each spawner makes of them.

A profile means the same thing whichever spawner runs it, so it is written once (one YAML file
per profile, checked against ``profile.schema.json``) and translated here: into KubeSpawner's
``profile_list`` for the kubernetes mode (``to_profile_list``, a pure function tested as dict
literals) and into ``Profile``/``Size`` objects the embedded mode's ``ProfileLocalSpawner`` applies.

Group restriction lives here too (``Profile.allows``, ``profiles_for``, ``resolve_choice``): a
profile lists the JupyterHub groups that may use it; hub admins may use every profile.

A broken file must stop start-up with a message a person can act on, so every problem names the
file and the JSON path of the field (``python.yaml: $.sizes[0].mem_limit: ...``).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlhub.errors import BadRequest, Forbidden, MlhubError

PROFILES_DIR = Path(__file__).resolve().parent
SCHEMA_PATH = PROFILES_DIR / "profile.schema.json"

# The option key under which sizes appear in KubeSpawner's profile_options and in user_options.
SIZE_OPTION = "size"

_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class ProfileError(MlhubError):
    """One or more profile files are invalid; the hub must not start with them.

    ``detail`` lists ``{"file", "field", "message"}``; the message shows them all, one a line.
    """

    error = "invalid_profile"

    def __init__(self, problems):
        lines = [f"  {p['file']}: {p['field']}: {p['message']}" for p in problems]
        super().__init__("invalid spawner profile:\n" + "\n".join(lines), detail=problems)
        self.problems = problems


@dataclass(frozen=True)
class Size:
    """One resource choice of a profile. Memory values are as written ("2G" or bytes)."""

    slug: str
    display_name: str
    default: bool = False
    cpu_limit: float | None = None
    cpu_guarantee: float | None = None
    mem_limit: int | str | None = None
    mem_guarantee: int | str | None = None
    gpu: int = 0
    kubespawner_override: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    """One notebook environment: kernels, environment variables, sizes, who may use it."""

    slug: str
    display_name: str
    kernels: tuple
    sizes: tuple
    description: str = ""
    default: bool = False
    groups: tuple = ()
    image: str | None = None
    environment: dict = field(default_factory=dict)
    kubespawner_override: dict = field(default_factory=dict)
    source: str = ""

    def allows(self, groups, admin=False):
        """True if a user in ``groups`` (names) may use this profile; admins may use all."""
        return admin or not self.groups or bool(set(self.groups) & set(groups))

    @property
    def default_size(self):
        """The size marked ``default``, else the first one."""
        return next((s for s in self.sizes if s.default), self.sizes[0])

    def get_size(self, slug):
        return next((s for s in self.sizes if s.slug == slug), None)


def to_bytes(value):
    """Bytes from a schema-valid memory value: an integer, or "1.5G"-style (powers of 1024)."""
    if isinstance(value, int):
        return value
    return int(float(value[:-1]) * _UNITS[value[-1]])


def load_schema():
    return json.loads(SCHEMA_PATH.read_text())


def load_profiles(directory=PROFILES_DIR):
    """Read, check and return every ``*.yaml`` profile in ``directory``.

    Order: the default profile first, then by file name, which is the order of the spawn page.
    Raises ``ProfileError`` naming every bad file and field; nothing is returned half-checked.
    """
    directory = Path(directory)
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not files:
        raise ProfileError(
            [{"file": str(directory), "field": "$", "message": "no *.yaml profile files here"}]
        )
    import jsonschema  # imported here: it takes seconds, and only loading profiles needs it

    validator = jsonschema.Draft202012Validator(load_schema())
    problems = []
    profiles = []
    for path in files:
        doc, file_problems = _read_file(path, validator)
        if file_problems:
            problems.extend(file_problems)
        else:
            profiles.append(_make_profile(doc, path))
    problems.extend(_cross_file_problems(profiles))
    if problems:
        raise ProfileError(problems)
    return sorted(profiles, key=lambda p: (not p.default, Path(p.source).name))


def _read_file(path, validator):
    """Parse one file; return (document, problems)."""

    def problem(field_, message):
        return {"file": str(path), "field": field_, "message": message}

    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "$"
        return None, [problem(where, f"not valid YAML: {getattr(e, 'problem', None) or e}")]
    errors = sorted(validator.iter_errors(doc), key=lambda e: (e.json_path, e.message))
    problems = [problem(e.json_path, e.message) for e in errors]
    if not problems:
        problems = [problem(f, m) for f, m in _semantic_problems(doc)]
    return doc, problems


def _semantic_problems(doc):
    """What the schema cannot say: unique size slugs, one default, guarantee <= limit."""
    seen = {}
    defaults = []
    for i, size in enumerate(doc["sizes"]):
        where = f"$.sizes[{i}]"
        if size["slug"] in seen:
            yield (
                f"{where}.slug",
                f"{size['slug']!r} is already used by $.sizes[{seen[size['slug']]}]",
            )
        seen.setdefault(size["slug"], i)
        if size.get("default"):
            defaults.append(i)
        for kind, convert in (("cpu", float), ("mem", to_bytes)):
            limit, guarantee = size.get(f"{kind}_limit"), size.get(f"{kind}_guarantee")
            if limit is not None and guarantee is not None and convert(guarantee) > convert(limit):
                yield (
                    f"{where}.{kind}_guarantee",
                    f"{guarantee!r} is more than {kind}_limit {limit!r}",
                )
    if len(defaults) > 1:
        yield (
            f"$.sizes[{defaults[1]}].default",
            f"only one size may be the default ($.sizes[{defaults[0]}] is)",
        )


def _cross_file_problems(profiles):
    """Slugs unique across files; at most one default profile."""
    by_slug = {}
    default = None
    for p in profiles:
        other = by_slug.setdefault(p.slug, p)
        if other is not p:
            yield {
                "file": p.source,
                "field": "$.slug",
                "message": f"{p.slug!r} is already used by {other.source}",
            }
        if p.default:
            if default is not None:
                yield {
                    "file": p.source,
                    "field": "$.default",
                    "message": f"only one profile may be the default ({default.source} is)",
                }
            else:
                default = p


def _make_profile(doc, path):
    sizes = tuple(
        Size(
            slug=s["slug"],
            display_name=s["display_name"],
            default=s.get("default", False),
            cpu_limit=s.get("cpu_limit"),
            cpu_guarantee=s.get("cpu_guarantee"),
            mem_limit=s.get("mem_limit"),
            mem_guarantee=s.get("mem_guarantee"),
            gpu=s.get("gpu", 0),
            kubespawner_override=s.get("kubespawner_override", {}),
        )
        for s in doc["sizes"]
    )
    return Profile(
        slug=doc["slug"],
        display_name=doc["display_name"],
        description=doc.get("description", ""),
        default=doc.get("default", False),
        groups=tuple(doc.get("groups", ())),
        image=doc.get("image"),
        kernels=tuple(doc["kernels"]),
        environment={k: str(v) for k, v in doc.get("environment", {}).items()},
        sizes=sizes,
        kubespawner_override=doc.get("kubespawner_override", {}),
        source=str(path),
    )


def profiles_for(profiles, groups, admin=False):
    """The profiles a user in ``groups`` may pick, in order (admins: all of them)."""
    return [p for p in profiles if p.allows(groups, admin)]


def resolve_choice(profiles, user_options, groups, admin=False):
    """Check ``user_options`` (``{"profile": slug, "size": slug}``) and return (Profile, Size).

    Empty options mean the defaults: the default profile if the user may use it, else the first
    one they may use; its default size. This is the server-side check: a profile or size sent
    by hand (form POST, REST API) that the user's groups do not allow is refused with
    ``Forbidden``; an unknown one with ``BadRequest``. Both messages say what to do instead.
    """
    if not isinstance(user_options, dict):
        raise BadRequest(
            "user_options must be an object like {'profile': 'python', 'size': 'small'}"
        )
    allowed = profiles_for(profiles, groups, admin)
    slug = user_options.get("profile")
    if not slug:
        if not allowed:
            raise Forbidden(
                "No profile is available to you; ask a hub admin to add you to a group."
            )
        profile = next((p for p in allowed if p.default), allowed[0])
    else:
        profile = next((p for p in profiles if p.slug == slug), None)
        if profile is None:
            names = ", ".join(p.slug for p in allowed) or "none"
            raise BadRequest(f"Unknown profile {slug!r}; choose one of: {names}.")
        if not profile.allows(groups, admin):
            yours = ", ".join(sorted(groups)) or "no group"
            raise Forbidden(
                f"The profile {profile.display_name!r} is restricted to the groups "
                f"{', '.join(profile.groups)}; you are in {yours}. "
                "Pick another profile, or ask a hub admin to add you to one of those groups.",
                detail={"profile": profile.slug, "groups": list(profile.groups)},
            )
    size_slug = user_options.get(SIZE_OPTION)
    if not size_slug:
        return profile, profile.default_size
    size = profile.get_size(size_slug)
    if size is None:
        names = ", ".join(s.slug for s in profile.sizes)
        raise BadRequest(
            f"Unknown size {size_slug!r} for the profile {profile.display_name!r}; "
            f"choose one of: {names}."
        )
    return profile, size


def size_override(size):
    """KubeSpawner traits for one size: limits, guarantees, GPUs, then its passthrough."""
    override = {
        key: getattr(size, key)
        for key in ("cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee")
        if getattr(size, key) is not None
    }
    if size.gpu:
        override["extra_resource_limits"] = {"nvidia.com/gpu": str(size.gpu)}
        override["extra_resource_guarantees"] = {"nvidia.com/gpu": str(size.gpu)}
    override.update(size.kubespawner_override)
    return override


def profile_list_entry(profile):
    """One KubeSpawner ``profile_list`` entry, with the sizes as ``profile_options``."""
    override = {"environment": {**profile.environment, "MLHUB_PROFILE": profile.slug}}
    if profile.image:
        override["image"] = profile.image
    override.update(profile.kubespawner_override)
    default_size = profile.default_size
    entry = {
        "display_name": profile.display_name,
        "slug": profile.slug,
        "description": profile.description,
        "kubespawner_override": override,
        "profile_options": {
            SIZE_OPTION: {
                "display_name": "Size",
                "choices": {
                    s.slug: {
                        "display_name": s.display_name,
                        "default": s is default_size,
                        "kubespawner_override": size_override(s),
                    }
                    for s in profile.sizes
                },
            }
        },
    }
    if profile.default:
        entry["default"] = True
    return entry


def to_profile_list(profiles):
    """KubeSpawner ``profile_list`` for ``profiles`` (filter with ``profiles_for`` first)."""
    return [profile_list_entry(p) for p in profiles]
