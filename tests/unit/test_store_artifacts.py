"""The content-addressed artifact store: digest by contents, dedup, safe unpack, cleanup."""

import io
import tarfile

import pytest

from mlhub import bundle
from mlhub.errors import InvalidBundle
from mlhub.publisher.artifacts import ArtifactStore

MANIFEST = "format: 1\nname: {name}\nruntime: python\nflavor: sklearn\nmodel_file: model/m.pkl\n"


def make_bundle(tmp_path, name="iris", payload=b"weights", dirname="src"):
    path = tmp_path / dirname
    (path / "model").mkdir(parents=True, exist_ok=True)
    (path / "mlhub.yaml").write_text(MANIFEST.format(name=name))
    (path / "model" / "m.pkl").write_bytes(payload)
    return path


def upload(store, data):
    up = store.new_upload()
    for i in range(0, len(data), 7):  # as tornado delivers it: in chunks
        up.write(data[i : i + 7])
    up.close()
    return up


def test_upload_is_stored_under_its_content_digest(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    src = make_bundle(tmp_path)
    up = upload(store, bundle.pack(src))
    ingested = store.ingest(up.path, name="iris", max_bytes=10_000)
    assert ingested.digest == bundle.bundle_digest(src), "the version id is the bundle digest"
    assert ingested.manifest["name"] == "iris"
    path = store.commit(ingested)
    hexdigest = ingested.digest.split(":")[1]
    assert path == tmp_path / "artifacts" / "sha256" / hexdigest[:2] / f"{hexdigest}.tar.gz"
    assert not up.path.exists(), "the temporary upload was renamed into place"
    with open(path, "rb") as fh:
        bundle.unpack(fh, tmp_path / "again")
    assert bundle.bundle_digest(tmp_path / "again") == ingested.digest


def test_same_contents_in_another_archive_is_the_same_version(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    src = make_bundle(tmp_path)
    first = store.ingest(upload(store, bundle.pack(src)).path, name="iris", max_bytes=None)
    store.commit(first)
    # same files, different tar metadata (mtime, order, compression)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
        tar.add(src / "model" / "m.pkl", "model/m.pkl")
        tar.add(src / "mlhub.yaml", "mlhub.yaml")
    second = store.ingest(upload(store, raw.getvalue()).path, name="iris", max_bytes=None)
    assert second.digest == first.digest
    assert store.commit(second) == store.path_for(first.digest)
    assert len(list((tmp_path / "artifacts" / "sha256").rglob("*.tar.gz"))) == 1
    assert list((tmp_path / "artifacts" / "tmp").glob("upload-*")) == []


def test_the_url_name_wins_and_the_stored_bundle_says_so(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    src = make_bundle(tmp_path, name="old-name")
    ingested = store.ingest(upload(store, bundle.pack(src)).path, name="new-name", max_bytes=None)
    assert ingested.manifest["name"] == "new-name"
    assert bundle.load_manifest(ingested.bundle_dir)["name"] == "new-name"
    assert ingested.digest == bundle.bundle_digest(ingested.bundle_dir)
    with open(store.commit(ingested), "rb") as fh:
        assert bundle.unpack(fh, tmp_path / "stored")["name"] == "new-name"


def test_content_over_the_limit_is_refused_and_nothing_is_left(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    src = make_bundle(tmp_path, payload=b"x" * 5000)
    up = upload(store, bundle.pack(src))
    with pytest.raises(InvalidBundle, match="exceeds the limit of 1000 bytes"):
        store.ingest(up.path, name="iris", max_bytes=1000)
    up.discard()
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []


@pytest.mark.parametrize("entry", ["../evil", "/etc/evil"])
def test_entries_outside_the_bundle_are_refused(tmp_path, entry):
    store = ArtifactStore(tmp_path / "artifacts")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo(entry)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(InvalidBundle, match="points outside the bundle"):
        store.ingest(upload(store, raw.getvalue()).path, name="iris", max_bytes=None)
    assert not (tmp_path / "evil").exists()


def test_not_an_archive(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(InvalidBundle, match="not a readable bundle archive"):
        store.ingest(upload(store, b"hello, not a tarball").path, name="iris", max_bytes=None)


def test_extract_and_remove_unreferenced(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    kept = store.ingest(
        upload(store, bundle.pack(make_bundle(tmp_path, payload=b"a"))).path,
        name="iris",
        max_bytes=None,
    )
    dropped = store.ingest(
        upload(store, bundle.pack(make_bundle(tmp_path, payload=b"b", dirname="b"))).path,
        name="iris",
        max_bytes=None,
    )
    kept_path, dropped_path = store.commit(kept), store.commit(dropped)
    dest = store.extract(kept.digest, tmp_path / "models" / "alice" / "iris" / kept.hex)
    assert bundle.bundle_digest(dest) == kept.digest
    assert store.remove_unreferenced({str(kept_path)}) == 1
    assert kept_path.exists() and not dropped_path.exists()
