"""The content-addressed artifact store: ``<root>/sha256/ab/<hex>.tar.gz``.

An upload streams into a temporary file in the same file system (``<root>/tmp``), is unpacked
safely (``mlhub.bundle.unpack``: no links, no ``..``, a size limit) and named by the digest of its
*contents* (``mlhub.bundle.bundle_digest``), then renamed into place atomically. A bundle that is
already stored is not written again: the same digest is the same version. Artifacts are shared
between models (the digest does not include the owner), so they are removed only when no version
refers to them any more.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlhub import bundle


@dataclass
class Ingested:
    """An unpacked upload waiting to be accepted (``commit``) or dropped (``discard``)."""

    digest: str
    manifest: dict
    bundle_dir: Path
    archive: Path
    size: int

    @property
    def hex(self):
        return self.digest.split(":", 1)[1]

    def discard(self):
        shutil.rmtree(self.bundle_dir, ignore_errors=True)
        self.archive.unlink(missing_ok=True)


class Upload:
    """A streaming upload: chunks are appended to a temporary file, never kept in memory."""

    def __init__(self, tmp_dir):
        fd, path = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=tmp_dir)
        self.path = Path(path)
        self.file = os.fdopen(fd, "wb")
        self.size = 0

    def write(self, chunk):
        self.file.write(chunk)
        self.size += len(chunk)

    def close(self):
        self.file.close()

    def discard(self):
        self.file.close()
        self.path.unlink(missing_ok=True)


class ArtifactStore:
    """Bundles by digest under ``root`` (the data directory's ``artifacts/``)."""

    def __init__(self, root):
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest):
        algo, hexdigest = digest.split(":", 1)
        return self.root / algo / hexdigest[:2] / f"{hexdigest}.tar.gz"

    def new_upload(self):
        return Upload(self.tmp_dir)

    def ingest(self, archive, *, name, max_bytes):
        """Unpack ``archive`` into a temporary bundle directory and compute its digest.

        The model's name comes from the URL it is published under; if the manifest says
        otherwise it is rewritten, so the stored bundle (and its digest) is what is served.
        Blocking (reads and hashes the whole bundle): run it in an executor.
        """
        archive = Path(archive)
        bundle_dir = Path(tempfile.mkdtemp(prefix="bundle-", dir=self.tmp_dir))
        try:
            with open(archive, "rb") as fh:
                manifest = bundle.unpack(fh, bundle_dir, max_bytes=max_bytes)
            if manifest["name"] != name:
                manifest["name"] = name
                bundle.write_manifest(bundle_dir, manifest)
                # the archive must hold exactly the bundle we serve: repack it
                with open(archive, "wb") as fh:
                    bundle.pack(bundle_dir, fh)
            digest = bundle.bundle_digest(bundle_dir)
        except BaseException:
            shutil.rmtree(bundle_dir, ignore_errors=True)
            raise
        return Ingested(digest, manifest, bundle_dir, archive, archive.stat().st_size)

    def commit(self, ingested):
        """Move the archive to its content address (unless already stored); return the path."""
        target = self.path_for(ingested.digest)
        if target.exists():
            ingested.archive.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(ingested.archive, target)
        return target

    def extract(self, digest, dest, max_bytes=None):
        """Unpack a stored bundle into ``dest`` (atomically: a half-written dir never appears)."""
        dest = Path(dest)
        tmp = Path(tempfile.mkdtemp(prefix="bundle-", dir=self.tmp_dir))
        try:
            with open(self.path_for(digest), "rb") as fh:
                bundle.unpack(fh, tmp, max_bytes=max_bytes)
            place(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def remove_unreferenced(self, referenced):
        """Delete stored archives whose path is not in ``referenced``; return how many."""
        keep = {Path(p) for p in referenced}
        removed = 0
        for path in self.root.glob("sha256/*/*.tar.gz"):
            if path not in keep:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def place(src_dir, dest):
    """Rename ``src_dir`` to ``dest`` unless ``dest`` exists (same digest = same content)."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(src_dir, ignore_errors=True)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src_dir, dest)
    return dest
