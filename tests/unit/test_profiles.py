"""Spawner profiles: shipped files, the KubeSpawner profile_list they become, group filtering."""

import pytest

from mlhub import __version__ as VERSION
from mlhub.errors import BadRequest, Forbidden
from mlhub.profiles import (
    PROFILES_DIR,
    Profile,
    Size,
    load_profiles,
    profile_list_entry,
    profiles_for,
    resolve_choice,
    to_profile_list,
)

SMALL = Size(
    slug="small",
    display_name="Small",
    default=True,
    cpu_limit=1,
    cpu_guarantee=0.5,
    mem_limit="2G",
    mem_guarantee="1G",
)
GPU = Size(slug="gpu", display_name="GPU", cpu_limit=4, mem_limit="16G", gpu=1)
PYTHON = Profile(
    slug="python",
    display_name="Python",
    description="Python things",
    default=True,
    kernels=("python3",),
    sizes=(SMALL, GPU),
    image=f"mlhub/notebook-python:{VERSION}",
    environment={"MLHUB_RUNTIME": "python"},
    kubespawner_override={"node_selector": {"pool": "cpu"}},
)
R = Profile(slug="r", display_name="R", kernels=("ir",), sizes=(SMALL,), groups=("r-users",))
SECRET = Profile(
    slug="secret", display_name="Secret", kernels=("python3",), sizes=(SMALL,), groups=("a", "b")
)


def test_shipped_profiles_load_in_spawn_page_order():
    profiles = load_profiles(PROFILES_DIR)
    assert [p.slug for p in profiles] == ["python", "python-r", "r"]
    assert [p.display_name for p in profiles] == ["Python (standard)", "Python + R", "R"]
    assert [p.kernels for p in profiles] == [("python3",), ("python3", "ir"), ("ir",)]
    assert profiles[0].default
    for p in profiles:
        assert len(p.sizes) >= 3, p.slug
        assert p.image.startswith("mlhub/notebook-")
        assert p.default_size.slug == "small"


def test_profile_list_entry_is_kubespawner_shaped():
    assert profile_list_entry(PYTHON) == {
        "display_name": "Python",
        "slug": "python",
        "description": "Python things",
        "default": True,
        "kubespawner_override": {
            "environment": {"MLHUB_RUNTIME": "python", "MLHUB_PROFILE": "python"},
            "image": f"mlhub/notebook-python:{VERSION}",
            "node_selector": {"pool": "cpu"},
        },
        "profile_options": {
            "size": {
                "display_name": "Size",
                "choices": {
                    "small": {
                        "display_name": "Small",
                        "default": True,
                        "kubespawner_override": {
                            "cpu_limit": 1,
                            "cpu_guarantee": 0.5,
                            "mem_limit": "2G",
                            "mem_guarantee": "1G",
                        },
                    },
                    "gpu": {
                        "display_name": "GPU",
                        "default": False,
                        "kubespawner_override": {
                            "cpu_limit": 4,
                            "mem_limit": "16G",
                            "extra_resource_limits": {"nvidia.com/gpu": "1"},
                            "extra_resource_guarantees": {"nvidia.com/gpu": "1"},
                        },
                    },
                },
            }
        },
    }


def test_profile_without_image_or_default_leaves_them_out():
    entry = profile_list_entry(R)
    assert "default" not in entry
    assert entry["kubespawner_override"] == {"environment": {"MLHUB_PROFILE": "r"}}


def test_to_profile_list_keeps_order():
    assert [e["slug"] for e in to_profile_list([R, PYTHON])] == ["r", "python"]


def test_group_filter():
    profiles = [PYTHON, R, SECRET]
    assert profiles_for(profiles, []) == [PYTHON]
    assert profiles_for(profiles, ["r-users"]) == [PYTHON, R]
    assert profiles_for(profiles, ["b", "other"]) == [PYTHON, SECRET]
    assert profiles_for(profiles, [], admin=True) == profiles


def test_resolve_defaults_and_explicit_choice():
    assert resolve_choice([R, PYTHON], {}, []) == (PYTHON, SMALL)
    assert resolve_choice([PYTHON, R], {"profile": "python", "size": "gpu"}, []) == (PYTHON, GPU)
    # the default profile is not allowed: the first allowed one is used
    default_r = Profile(
        slug="r", display_name="R", kernels=("ir",), sizes=(SMALL,), default=True, groups=("x",)
    )
    assert resolve_choice([default_r, SECRET, PYTHON], {}, [])[0] == PYTHON


def test_resolve_refuses_a_profile_outside_the_users_groups():
    with pytest.raises(Forbidden) as e:
        resolve_choice([PYTHON, R], {"profile": "r", "size": "small"}, ["analysts"])
    assert e.value.status == 403
    assert "'R' is restricted to the groups r-users" in e.value.message
    assert "you are in analysts" in e.value.message
    assert resolve_choice([PYTHON, R], {"profile": "r"}, ["r-users"])[0] == R
    assert resolve_choice([PYTHON, R], {"profile": "r"}, [], admin=True)[0] == R


@pytest.mark.parametrize(
    "options, message",
    [
        ({"profile": "julia"}, "Unknown profile 'julia'; choose one of: python"),
        ({"profile": "python", "size": "huge"}, "Unknown size 'huge'"),
        ("python", "user_options must be an object"),
    ],
)
def test_resolve_refuses_unknown_choices(options, message):
    with pytest.raises(BadRequest) as e:
        resolve_choice([PYTHON, R], options, [])
    assert message in e.value.message


def test_resolve_with_no_allowed_profile():
    with pytest.raises(Forbidden, match="No profile is available"):
        resolve_choice([R], {}, [])
