"""Spawner profiles (``mlhub.profiles``): the YAML files in this folder, their schema and loader.

``loader`` says what a profile becomes in each mode; ``profile.schema.json`` documents each field.
"""

from mlhub.profiles.loader import (
    PROFILES_DIR,
    Profile,
    ProfileError,
    Size,
    load_profiles,
    profile_list_entry,
    profiles_for,
    resolve_choice,
    to_profile_list,
)

__all__ = [
    "PROFILES_DIR",
    "Profile",
    "ProfileError",
    "Size",
    "load_profiles",
    "profile_list_entry",
    "profiles_for",
    "resolve_choice",
    "to_profile_list",
]
