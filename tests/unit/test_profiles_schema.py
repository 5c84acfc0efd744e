"""A broken profile file stops start-up with an error naming the file and the field."""

import textwrap

import pytest

from mlhub.profiles import PROFILES_DIR, ProfileError, load_profiles

GOOD = """\
display_name: Python
slug: python
kernels: [python3]
sizes:
  - slug: small
    display_name: Small
    cpu_limit: 1
    mem_limit: 2G
"""


def write(directory, name, text):
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(directory):
    with pytest.raises(ProfileError) as e:
        load_profiles(directory)
    return e.value


def test_good_file_loads(tmp_path):
    write(tmp_path, "python.yaml", GOOD)
    [profile] = load_profiles(tmp_path)
    assert profile.slug == "python"
    assert profile.sizes[0].mem_limit == "2G"
    assert profile.source == str(tmp_path / "python.yaml")


@pytest.mark.parametrize(
    "replace, field, message",
    [
        (("mem_limit: 2G", "mem_limit: lots"), "$.sizes[0].mem_limit", "'lots'"),
        (("cpu_limit: 1", "cpu_limit: -1"), "$.sizes[0].cpu_limit", "-1"),
        (("kernels: [python3]", "kernels: []"), "$.kernels", "should be non-empty"),
        (("kernels: [python3]\n", ""), "$", "'kernels' is a required property"),
        (("slug: python", "slug: Python Env"), "$.slug", "does not match"),
        (("slug: python", "slug: python\ncolour: blue"), "$", "'colour' was unexpected"),
        (("slug: python", "slug: python\ngroups: data"), "$.groups", "not of type 'array'"),
        (
            ("slug: python", "slug: python\nenvironment: {JUPYTERHUB_API_TOKEN: x}"),
            "$.environment",
            "JUPYTERHUB_API_TOKEN",
        ),
        (
            ("slug: python", "slug: python\nenvironment: {MLHUB_PROFILE: x}"),
            "$.environment",
            "MLHUB_PROFILE",
        ),
        (("    mem_limit: 2G", "    mem_limit: 2G\n    gpu: two"), "$.sizes[0].gpu", "'two'"),
    ],
)
def test_schema_error_names_file_and_field(tmp_path, replace, field, message):
    path = write(tmp_path, "python.yaml", GOOD.replace(*replace))
    error = problems(tmp_path)
    [problem] = [p for p in error.problems if p["field"] == field]
    assert problem["file"] == str(path)
    assert message in problem["message"]
    assert f"{path}: {field}: " in error.message


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "broken.yaml", GOOD.replace("slug: python", "slug: python: 3"))
    error = problems(tmp_path)
    assert error.problems[0]["file"] == str(path)
    assert error.problems[0]["field"] == "line 2"
    assert "not valid YAML: mapping values are not allowed here" in error.message


def test_empty_file_is_not_a_profile(tmp_path):
    write(tmp_path, "empty.yaml", "")
    assert "None is not of type 'object'" in problems(tmp_path).message


def test_every_broken_file_is_reported(tmp_path):
    write(tmp_path, "a.yaml", GOOD.replace("mem_limit: 2G", "mem_limit: x"))
    write(tmp_path, "b.yaml", GOOD.replace("slug: python", "slug: b").replace("kernels", "kernel"))
    files = {p["file"] for p in problems(tmp_path).problems}
    assert files == {str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")}


@pytest.mark.parametrize(
    "sizes, field, message",
    [
        (
            "  - {slug: s, display_name: S}\n  - {slug: s, display_name: T}\n",
            "$.sizes[1].slug",
            "already used by $.sizes[0]",
        ),
        (
            "  - {slug: s, display_name: S, default: true}\n"
            "  - {slug: t, display_name: T, default: true}\n",
            "$.sizes[1].default",
            "only one size may be the default",
        ),
        (
            "  - {slug: s, display_name: S, mem_limit: 1G, mem_guarantee: 2G}\n",
            "$.sizes[0].mem_guarantee",
            "'2G' is more than mem_limit '1G'",
        ),
        (
            "  - {slug: s, display_name: S, cpu_limit: 1, cpu_guarantee: 1.5}\n",
            "$.sizes[0].cpu_guarantee",
            "1.5 is more than cpu_limit 1",
        ),
    ],
)
def test_semantic_errors_name_the_field(tmp_path, sizes, field, message):
    text = GOOD.split("sizes:")[0] + "sizes:\n" + sizes
    write(tmp_path, "python.yaml", text)
    [problem] = problems(tmp_path).problems
    assert (problem["field"], problem["file"]) == (field, str(tmp_path / "python.yaml"))
    assert message in problem["message"]


def test_slugs_are_unique_across_files(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    [problem] = problems(tmp_path).problems
    assert problem == {
        "file": str(tmp_path / "b.yaml"),
        "field": "$.slug",
        "message": f"'python' is already used by {tmp_path / 'a.yaml'}",
    }


def test_only_one_default_profile(tmp_path):
    write(tmp_path, "a.yaml", GOOD.replace("slug: python", "slug: a\ndefault: true"))
    write(tmp_path, "b.yaml", GOOD.replace("slug: python", "slug: b\ndefault: true"))
    [problem] = problems(tmp_path).problems
    assert problem["file"] == str(tmp_path / "b.yaml")
    assert problem["field"] == "$.default"


def test_folder_without_profiles(tmp_path):
    assert "no *.yaml profile files here" in problems(tmp_path).message


def test_shipped_profiles_are_valid():
    assert len(load_profiles(PROFILES_DIR)) == 3
