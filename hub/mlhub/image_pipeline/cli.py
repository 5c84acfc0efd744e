"""``mlhub images build|test|push [NAME ...]``: the standard images' pipeline on the command line.

Settings are ``ImagePipeline`` traits from the mlhub config file (``--config`` or
``MLHUB_CONFIG_FILE``); ``--registry`` and ``MLHUB_IMAGES_REGISTRY`` set the registry.
Errors (no engine, a failed build, step or push) print one clear message and exit 1.
"""

import os
import sys
import time

from mlhub.errors import MlhubError

IMAGES_HELP = """\
Build, smoke-test and push the standard images (images/<name>/). Each image is tagged with a
hash of its inputs (Dockerfile, context files, build arguments, base image): an image whose
inputs did not change is "up to date" and not rebuilt. `test` and `push` build first if needed.
"""


def add_images_parser(subparsers):
    images = subparsers.add_parser(
        "images", help="build, test and push the standard images", description=IMAGES_HELP
    )
    actions = images.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    for action, text in (
        ("build", "build the images whose inputs changed"),
        ("test", "build if needed, then run each image's smoke test"),
        ("push", "build if needed, then push the images to the registry"),
        ("list", "list the images and their content-hash tags"),
    ):
        p = actions.add_parser(action, help=text, description=text)
        p.add_argument("names", nargs="*", metavar="NAME", help="images (default: all)")
        p.add_argument("--config", metavar="FILE", help="mlhub config file (ImagePipeline.*)")
        if action == "push":
            p.add_argument("--registry", help="host[:port][/path] (ImagePipeline.registry)")
    return images


def make_pipeline(args, environ=None):
    """The pipeline with the config file's settings, then the environment's, then the flags'."""
    from traitlets.config import Config

    from mlhub.image_pipeline.pipeline import ImagePipeline
    from mlhub.settings import CONFIG_FILE_ENV, read_config_file

    environ = os.environ if environ is None else environ
    config_file = getattr(args, "config", None) or environ.get(CONFIG_FILE_ENV)
    config = read_config_file(config_file) if config_file else Config()
    pipeline = ImagePipeline(config=config)
    if environ.get("MLHUB_IMAGES_REGISTRY"):
        pipeline.registry = environ["MLHUB_IMAGES_REGISTRY"]
    if getattr(args, "registry", None):
        pipeline.registry = args.registry
    return pipeline


def _list(pipeline, names):
    for spec in pipeline.images(names):
        ref = f"{pipeline.repository(spec)}:{pipeline.tag_of(spec)}"
        state = "built" if pipeline._exists(ref) else "not built"
        print(f"{spec.name:<20} {ref:<48} {state}")


def run_images(args):
    started = time.monotonic()
    try:
        pipeline = make_pipeline(args)
        if args.images_command == "list":
            _list(pipeline, args.names)
            return 0
        action = getattr(pipeline, args.images_command)
        done = action(args.names or None)
    except MlhubError as e:
        print(f"mlhub images: error: {e.message}", file=sys.stderr)
        return 1
    verb = {"build": "built", "test": "tested", "push": "pushed"}[args.images_command]
    for name, ref in done.items():
        print(f"{name}: {verb} {ref}")
    print(
        f"mlhub images {args.images_command}: {len(done)} image(s) in "
        f"{time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return 0
