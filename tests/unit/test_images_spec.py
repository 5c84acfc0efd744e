"""The image pipeline's pure parts: image.yaml checks, the build context and its content hash."""

import io
import tarfile
from pathlib import Path

import pytest

from mlhub.errors import InvalidImageSpec
from mlhub.image_pipeline.spec import build_context, build_order, content_hash, discover, load_spec


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


def image_from(repo, name, base):
    folder = repo / "images" / name
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        f"ARG MLHUB_IMAGES_NAMESPACE=mlhub\nARG TAG=0.1.0\nFROM {base}\nARG TAG\nUSER 1000\n"
    )


def test_a_base_named_with_build_args_resolves_as_the_engine_does(repo):
    image_from(repo, "child", "${MLHUB_IMAGES_NAMESPACE}/app:$TAG")
    spec = load_spec(repo, "child")
    assert spec.base_images() == ["mlhub/app:0.1.0"]  # the ARG defaults
    assert spec.base_images({"MLHUB_IMAGES_NAMESPACE": "acme", "OTHER": "x"}) == ["acme/app:0.1.0"]


def test_an_image_builds_after_the_standard_image_it_starts_from(repo):
    image_from(repo, "aa-child", "${MLHUB_IMAGES_NAMESPACE}/app:$TAG")
    image_from(repo, "grandchild", "mlhub/aa-child:latest")
    order = [s.name for s in build_order(discover(repo), "mlhub")]
    assert order == ["app", "aa-child", "grandchild"]  # alphabetical would put aa-child first
    # another namespace: mlhub/aa-child is then not one of ours, the rest follows the namespace
    order = [
        s.name for s in build_order(discover(repo), "acme", {"MLHUB_IMAGES_NAMESPACE": "acme"})
    ]
    assert order == ["app", "aa-child", "grandchild"]
    # naming only the child adds its bases when asked to (mlhub images build grandchild)
    alone = discover(repo, ["grandchild"])
    assert [s.name for s in build_order(alone, "mlhub")] == ["grandchild"]
    loaded = build_order(alone, "mlhub", load=lambda n: load_spec(repo, n))
    assert [s.name for s in loaded] == ["app", "aa-child", "grandchild"]


def test_images_built_from_each_other_are_refused(repo):
    image_from(repo, "one", "mlhub/two:latest")
    image_from(repo, "two", "mlhub/one:latest")
    with pytest.raises(InvalidImageSpec, match="built from each other"):
        build_order(discover(repo), "mlhub")


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


def test_the_standard_images_build_after_the_ones_they_start_from():
    """The repository's own images: hub takes the npm proxy tree from the proxy image and
    serving-mlflow starts from serving-python, so those build first (by name they come after)."""
    root = Path(__file__).resolve().parents[2]
    args = {"MLHUB_IMAGES_NAMESPACE": "mlhub", "MLHUB_VERSION": "9.9.9"}
    assert load_spec(root, "hub").base_images(args) == ["mlhub/proxy:9.9.9", "debian:bookworm-slim"]
    order = [s.name for s in build_order(discover(root), "mlhub", args)]
    assert order.index("proxy") < order.index("hub")
    assert order.index("serving-python") < order.index("serving-mlflow")
    assert sorted(order) == sorted(s.name for s in discover(root))


def test_mlhub_in_a_context_needs_the_built_jupyterlab_extension(repo):
    """Installing mlhub from source ships the JupyterLab extension's build: an image made
    before it is built would lack the Publish button, so the pipeline says how to build it."""
    (repo / "pyproject.toml").write_text('[tool.setuptools]\npackage-dir = {"mlhub" = "code"}\n')
    (repo / "LICENSE").write_text("BSD\n")
    (repo / "extension" / "jupyter-config").mkdir(parents=True)
    (repo / "images" / "app" / "image.yaml").write_text('context: ["@mlhub"]\n')
    with pytest.raises(InvalidImageSpec, match="run scripts/build-labextension"):
        load_spec(repo, "app")
    built = repo / "extension" / "jupyterlab" / "labextension"
    built.mkdir(parents=True)
    (built / "package.json").write_text("{}")
    assert load_spec(repo, "app").context[-3:] == [
        "extension/jupyter-config",
        "extension/jupyterlab/labextension",
        "code",
    ]
