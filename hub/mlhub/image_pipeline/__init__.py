"""The standard images' pipeline: ``mlhub images build|test|push`` (images/README.md).

``spec`` reads ``images/<name>/`` (Dockerfile, image.yaml) and makes the build context and its
content hash, ``pipeline`` drives the Docker engine, ``smoke`` runs an image's smoke test and
``cli`` is the command line.
"""
