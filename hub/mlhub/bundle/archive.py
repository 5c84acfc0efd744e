"""A bundle on the wire: a deterministic ``tar.gz`` (``pack``), unpacked with every path and
size checked (``unpack``), and its version id, the sha256 of its contents (``bundle_digest``)."""

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

from mlhub.bundle.manifest import load_manifest
from mlhub.errors import InvalidBundle


def _files(path):
    root = Path(path)
    return sorted(p for p in root.rglob("*") if p.is_file())


def bundle_digest(path):
    """The version id: sha256 over each file's relative path and content, in sorted order."""
    root = Path(path)
    outer = hashlib.sha256()
    for f in _files(root):
        inner = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                inner.update(block)
        outer.update(f"{f.relative_to(root).as_posix()}\0{inner.hexdigest()}\n".encode())
    return "sha256:" + outer.hexdigest()


def pack(path, fileobj=None):
    """Write the bundle as a deterministic tar.gz to ``fileobj`` (or return the bytes)."""
    root = Path(path)
    out = fileobj if fileobj is not None else io.BytesIO()
    import gzip

    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for f in _files(root):
            info = tarfile.TarInfo(f.relative_to(root).as_posix())
            info.size = f.stat().st_size
            info.mode = 0o644
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    if fileobj is None:
        return out.getvalue()
    return None


def unpack(fileobj, dest, max_bytes=None):
    """Safely extract a bundle tar(.gz) into ``dest`` and return its validated manifest.

    Refuses absolute paths, ``..``, links and devices, and stops at ``max_bytes`` of content,
    so an upload cannot write outside ``dest`` or fill the disk.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
            for member in tar:
                name = member.name
                parts = Path(name).parts
                if name.startswith("/") or ".." in parts:
                    raise InvalidBundle(
                        f"bundle entry {name!r} points outside the bundle", {"field": "archive"}
                    )
                if member.isdir():
                    (dest / name).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise InvalidBundle(
                        f"bundle entry {name!r} is a link or device; bundles hold regular files",
                        {"field": "archive"},
                    )
                total += member.size
                if max_bytes is not None and total > max_bytes:
                    raise InvalidBundle(
                        f"bundle content exceeds the limit of {max_bytes} bytes",
                        {"field": "archive", "limit": max_bytes},
                    )
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise InvalidBundle(
            f"the upload is not a readable bundle archive (tar.gz): {exc}", {"field": "archive"}
        ) from exc
    return load_manifest(dest)
