"""The image pipeline's pure parts: image.yaml checks, the build context and its content hash."""

import io
import tarfile

import pytest
from mlhub.errors import InvalidImageSpec
from mlhub.images.spec import build_context, content_hash, discover, load_spec


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "images" / "site").mkdir(parents=True)
    (tmp_path / "images" / "site" / "setup.sh").write_text("echo site\n")
    (tmp_path / "images" / "site" / "setup.sh").chmod(0o755)
    app = tmp_path / "images" / "app"
    app.mkdir()
    (app / "Dockerfile").write_text(
        "FROM debian:bookworm-slim AS builder\nRUN true\n"
        "FROM builder AS more\nFROM debian:bookworm-slim\nCOPY --from=more / /\n"
    )
    (app / "image.yaml").write_text("context:\n  - code\n  - maybe?\n")
    (tmp_path / "code" / "__pycache__").mkdir(parents=True)
    (tmp_path / "code" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"cache")
    (tmp_path / "code" / "m.py").write_text("x = 1\n")
    return tmp_path


def names(context):
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        return {m.name: m.mode for m in tar}


def test_context_holds_the_listed_paths_and_no_caches(repo):
    spec = load_spec(repo, "app")
    assert spec.context == ["images/app", "images/site", "code"]  # maybe? is absent: left out
    members = names(build_context(spec, {"images/site/ca/corp.crt": b"PEM"}))
    assert set(members) == {
        "images/app/Dockerfile",
        "images/app/image.yaml",
        "images/site/setup.sh",
        "images/site/ca/corp.crt",
        "code/m.py",
    }
    assert members["images/site/setup.sh"] == 0o755 and members["code/m.py"] == 0o644


def test_base_images_skip_build_stages(repo):
    assert load_spec(repo, "app").base_images() == ["debian:bookworm-slim"]


def test_the_hash_changes_with_every_input_and_only_then(repo):
    spec = load_spec(repo, "app")
    args = {"MLHUB_PIP_INDEX_URL": ""}
    first = content_hash(build_context(spec), args, ["sha256:base"])
    (repo / "code" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"other cache")
    assert content_hash(build_context(spec), args, ["sha256:base"]) == first
    assert content_hash(build_context(spec), {"MLHUB_PIP_INDEX_URL": "x"}, ["sha256:base"]) != first
    assert content_hash(build_context(spec), args, ["sha256:new-base"]) != first
    (repo / "code" / "m.py").write_text("x = 2\n")
    assert content_hash(build_context(spec), args, ["sha256:base"]) != first
    assert len(first) == 16


def test_bad_specs_say_what_to_fix(repo):
    spec_file = repo / "images" / "app" / "image.yaml"
    spec_file.write_text("context: [../outside]\n")
    with pytest.raises(InvalidImageSpec, match="context path '../outside' is not a file"):
        load_spec(repo, "app")
    spec_file.write_text("smoke:\n  steps:\n    - name: x\n      serve: {port: 80}\n")
    with pytest.raises(InvalidImageSpec, match=r"at smoke/steps/0: .* is not valid under any"):
        load_spec(repo, "app")
    spec_file.write_text("smoke: [unclosed\n")
    with pytest.raises(InvalidImageSpec, match="is not valid YAML"):
        load_spec(repo, "app")
    with pytest.raises(InvalidImageSpec, match=r"no image 'nope'.*\(known: app\)"):
        discover(repo, ["nope"])
