"""Build -> test -> push for the standard images, through the Docker engine's API.

``mlhub images build|test|push`` (``mlhub.image_pipeline.cli``) and the CI pipelines (Jenkinsfile,
.github/workflows/images.yml) call this. Each image is tagged ``<namespace>/<name>:<content
hash>`` (spec.py), ``<namespace>/<name>:<mlhub version>`` (what the spawner profiles name) and
``:latest`` (the Kubernetes deployer's default serving image);
an image whose hash tag already exists is "up to date" and not built again. Builds use the
engine's classic builder (the Docker SDK has no BuildKit session), which Docker 20.10 has.
"""

import os
import re
import sys
import time
from glob import glob
from pathlib import Path

from traitlets import Dict, Integer, List, Unicode, default, validate
from traitlets.config import Configurable

from mlhub import __version__
from mlhub.errors import EngineUnavailable, ImageError

from .spec import build_context, build_order, content_hash, discover, load_spec

REPO_ROOT = Path(__file__).resolve().parents[3]  # hub/mlhub/image_pipeline/ -> the repository
MIRROR_ARGS = {
    "debian": "MLHUB_DEBIAN_MIRROR",
    "pip": "MLHUB_PIP_INDEX_URL",
    "cran": "MLHUB_CRAN_MIRROR",
    "npm": "MLHUB_NPM_REGISTRY",
}
INPUTS_LABEL = "dev.mlhub.image.inputs"
# Tags that follow the newest build: the version the spawner profiles name, and "latest".
ALIASES = (__version__, "latest")
_HASH_TAG = re.compile(r"^[0-9a-f]{16}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the engine colours a step's stderr


def connect(base_url=None, timeout=600):
    """A Docker API client that has answered a ping, or ``EngineUnavailable`` saying what to do."""
    try:
        import docker
    except ImportError:
        raise EngineUnavailable(
            "the Docker SDK for Python is not installed: pip install 'mlhub[images]'"
        ) from None
    where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.DockerClient(base_url=where, timeout=timeout)
        client.ping()
    except Exception as e:  # the SDK raises several unrelated types for "nobody answers"
        raise EngineUnavailable(
            f"no Docker engine answers at {where} ({type(e).__name__}): start one "
            "(scripts/docker-engine up here) or point DOCKER_HOST at it",
            {"engine": where},
        ) from None
    return client


def _say(message):
    print(message, file=sys.stderr, flush=True)


class ImagePipeline(Configurable):
    """Builds, smoke-tests and pushes the images under ``images/``."""

    namespace = Unicode(
        "mlhub",
        help="""Repository namespace of the images: ``<namespace>/<name>:<tag>``. Default
        ``mlhub`` (the spawner profiles name ``mlhub/notebook-python:<version>``).
        """,
    ).tag(config=True)

    registry = Unicode(
        "",
        help="""Registry ``mlhub images push`` pushes to, as ``host[:port][/path]``, e.g.
        ``registry.example.org/ds``. Images are pushed as ``<registry>/<namespace>/<name>``
        with the content-hash and version tags. Default: empty (``push`` then says to set it).
        Log in first with ``docker login``; credentials never go in a config file.
        Environment: ``MLHUB_IMAGES_REGISTRY``; command line: ``--registry``.
        """,
    ).tag(config=True)

    @validate("registry")
    def _strip_registry(self, proposal):
        return proposal.value.strip().rstrip("/")

    mirrors = Dict(
        per_key_traits={"debian": Unicode(), "pip": Unicode(), "cran": Unicode(), "npm": Unicode()},
        help="""Private package mirrors, for networks without the internet: ``debian``
        (replaces ``http://deb.debian.org`` in apt's sources), ``pip`` (a PyPI simple index
        URL), ``cran`` (a CRAN URL) and ``npm`` (an npm registry URL; the proxy image only,
        while building). Images are built through them (build arguments) and
        keep them for their users (``/etc/pip.conf``, R's ``Rprofile.site``), where
        ``PIP_INDEX_URL`` / ``CRAN_MIRROR`` in a container's environment still override them.
        Default: none (the public ones). Put no credentials in these URLs: they stay in the
        image. Example: ``c.ImagePipeline.mirrors = {"pip":
        "https://nexus.corp/repository/pypi/simple", "cran": "https://nexus.corp/repository/cran",
        "debian": "https://nexus.corp/repository"}``.
        """,
    ).tag(config=True)

    @validate("mirrors")
    def _known_mirrors(self, proposal):
        unknown = set(proposal.value) - set(MIRROR_ARGS)
        if unknown:
            raise ValueError(
                f"unknown mirror {sorted(unknown)}: use {', '.join(sorted(MIRROR_ARGS))}"
            )
        return proposal.value

    ca_certificates = List(
        Unicode(),
        help="""PEM files of CA certificates the images trust, for a TLS-inspecting proxy in
        front of the mirrors. Default: the ``*.crt`` files in
        ``/usr/local/share/ca-certificates`` (this machine's own additions), so an image
        builds wherever its host can download. Set ``[]`` to add none.
        """,
    ).tag(config=True)

    @default("ca_certificates")
    def _host_ca_certificates(self):
        return sorted(glob("/usr/local/share/ca-certificates/*.crt"))

    source_url = Unicode(
        "",
        help="""Where the images' source lives, for the ``org.opencontainers.image.source``
        label (e.g. the repository's web URL). Default: empty.
        """,
    ).tag(config=True)

    docker_url = Unicode(
        "",
        help="""Docker engine API address. Default: ``$DOCKER_HOST`` or
        ``unix:///var/run/docker.sock``.
        """,
    ).tag(config=True)

    smoke_timeout = Integer(
        180,
        help="""Seconds a smoke-test step may take (a step's own ``timeout`` in image.yaml
        wins). Default 180.
        """,
    ).tag(config=True)

    def __init__(self, root=None, client=None, say=_say, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root or REPO_ROOT)
        self._client = client
        self.say = say

    @property
    def client(self):
        if self._client is None:
            self._client = connect(self.docker_url or None)
        return self._client

    # ------------------------------------------------------------------ inputs and tags

    def build_args(self):
        args = {
            "MLHUB_VERSION": __version__,
            # an image built from another standard image names it ${MLHUB_IMAGES_NAMESPACE}/...
            "MLHUB_IMAGES_NAMESPACE": self.namespace,
        }
        for key, arg in MIRROR_ARGS.items():
            args[arg] = self.mirrors.get(key, "")
        return args

    def _extra_files(self):
        files = {}
        for path in self.ca_certificates:
            try:
                files[f"images/site/ca/{Path(path).name}"] = Path(path).read_bytes()
            except OSError as e:
                raise ImageError(f"cannot read the CA certificate {path}: {e.strerror}") from None
        return files

    def _base_ids(self, spec):
        import docker

        ids = []
        for base in spec.base_images(self.build_args()):
            try:
                ids.append(self.client.images.get(base).id)
            except docker.errors.ImageNotFound:
                own = base.startswith(f"{self.namespace}/")
                hint = (
                    f"`mlhub images build {base.split('/', 1)[1].split(':')[0]}` builds it"
                    if own
                    else "scripts/docker-engine up makes a local debian:bookworm-slim"
                )
                raise ImageError(
                    f"{spec.name}: base image {base} is not in the engine; {hint}",
                    {"image": spec.name, "base": base},
                ) from None
        return ids

    def repository(self, spec):
        return f"{self.namespace}/{spec.name}"

    def labels(self, spec):
        """The OCI labels the pipeline gives every image (its Dockerfile adds the description
        and base name): what it is, mlhub's version and where the source lives."""
        return {
            "org.opencontainers.image.title": f"mlhub {spec.name}",
            "org.opencontainers.image.version": __version__,
            "org.opencontainers.image.source": self.source_url,
        }

    def inputs(self, spec):
        """``(context tar bytes, build args, content-hash tag)`` of one image."""
        context = build_context(spec, self._extra_files())
        args = self.build_args()
        return context, args, content_hash(context, args, self._base_ids(spec), self.labels(spec))

    def images(self, names=None, with_bases=False):
        """The named images (default all), each after the standard image it is built from
        (``with_bases``: that image added where it was not named)."""
        load = (lambda name: load_spec(self.root, name)) if with_bases else None
        return build_order(discover(self.root, names), self.namespace, self.build_args(), load)

    def tag_of(self, spec):
        return self.inputs(spec)[2]

    def _exists(self, ref):
        import docker

        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None

    # ------------------------------------------------------------------ build

    def build(self, names=None):
        """Build each image whose inputs changed; return ``{name: "repo:hash"}``."""
        built = {}
        for spec in self.images(names, with_bases=True):
            built[spec.name] = self.build_one(spec)
        return built

    def build_one(self, spec):
        context, args, tag = self.inputs(spec)
        repo = self.repository(spec)
        ref = f"{repo}:{tag}"
        if self._exists(ref):
            self.say(f"{spec.name}: up to date ({ref})")
        else:
            self.say(f"{spec.name}: building {ref} ({len(context) // 1024} KiB context)")
            started = time.monotonic()
            self._stream_build(spec, context, args, repo, tag)
            size = self.client.images.get(ref).attrs["Size"] / 1e6
            self.say(
                f"{spec.name}: built {ref} in {time.monotonic() - started:.0f} s ({size:.0f} MB)"
            )
        for alias in ALIASES:
            self.client.api.tag(ref, repo, alias)
        self._drop_older(repo, tag)
        return ref

    def _drop_older(self, repo, tag):
        """Untag this image's earlier content-hash builds, so a machine that builds often does
        not keep every version (Docker frees their layers once nothing else uses them). One
        still used by a container stays."""
        import docker

        for image in self.client.images.list(name=repo, filters={"label": INPUTS_LABEL}):
            for ref in image.tags:
                name, _, old = ref.rpartition(":")
                if name == repo and old != tag and _HASH_TAG.match(old):
                    try:
                        self.client.images.remove(ref)
                    except docker.errors.APIError:
                        pass

    def _stream_build(self, spec, context, args, repo, tag):
        import docker

        tail = []
        try:
            stream = self.client.api.build(
                fileobj=context,
                custom_context=True,
                dockerfile=spec.dockerfile,
                tag=f"{repo}:{tag}",
                buildargs=args,
                labels={**self.labels(spec), INPUTS_LABEL: tag},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    raise ImageError(
                        f"{spec.name}: the build failed: {chunk['error'].strip()}\n"
                        + "".join(tail[-25:]),
                        {"image": spec.name, "error": chunk["error"].strip()},
                    )
                text = _ANSI.sub("", chunk.get("stream", ""))
                if text.strip():
                    tail.append(text if text.endswith("\n") else text + "\n")
                    for line in text.rstrip("\n").splitlines():
                        self.say(f"[{spec.name}] {line}")
        except docker.errors.APIError as e:
            raise ImageError(
                f"{spec.name}: the engine refused the build: {e.explanation or e}",
                {"image": spec.name},
            ) from None

    # ------------------------------------------------------------------ test

    def test(self, names=None):
        """Build (if needed) and smoke-test each image; ``ImageError`` at the first failure."""
        from .smoke import run_smoke

        results = {}
        for spec in self.images(names):
            ref = self.build_one(spec)
            run_smoke(self.client, spec, ref, default_timeout=self.smoke_timeout, say=self.say)
            results[spec.name] = ref
        return results

    # ------------------------------------------------------------------ push

    def push(self, names=None, registry=None):
        """Build if needed, then push the hash and version tags to the registry."""
        import docker

        registry = (registry or self.registry).rstrip("/")
        if not registry:
            raise ImageError(
                "no registry to push to: set c.ImagePipeline.registry, MLHUB_IMAGES_REGISTRY "
                "or --registry"
            )
        pushed = {}
        for spec in self.images(names):
            ref = self.build_one(spec)
            tag = ref.rsplit(":", 1)[1]
            target = f"{registry}/{self.repository(spec)}"
            for t in (tag, *ALIASES):
                self.client.api.tag(ref, target, t)
                self.say(f"{spec.name}: pushing {target}:{t}")
                try:
                    self._stream_push(spec, target, t)
                except docker.errors.APIError as e:
                    raise ImageError(
                        f"{spec.name}: the engine could not push to {registry}: "
                        f"{e.explanation or e}",
                        {"image": spec.name, "registry": registry},
                    ) from None
            pushed[spec.name] = f"{target}:{tag}"
        return pushed

    def _stream_push(self, spec, target, tag):
        seen = {}
        for chunk in self.client.api.push(target, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise ImageError(
                    f"{spec.name}: pushing {target}:{tag} failed: {chunk['error'].strip()}",
                    {"image": spec.name, "target": f"{target}:{tag}"},
                )
            layer, status = chunk.get("id"), chunk.get("status", "")
            # One line per layer and state change, not per progress tick.
            if status and seen.get(layer) != status:
                seen[layer] = status
                self.say(f"[{spec.name}] {layer + ': ' if layer else ''}{status}")
