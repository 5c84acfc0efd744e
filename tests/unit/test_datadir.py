"""Who may read what in the data directory (mlhub.datadir), on real files; what other
accounts can really reach is tried by those accounts in tests/component/test_tenant_isolation.py
and test_user_modes.py."""

import os
import stat
from pathlib import Path

import pytest
from support.embedded_hub import passable

from mlhub import datadir
from mlhub.errors import Conflict
from mlhub.settings import load_settings
from mlhub.sysusers import SystemAccount

NOGROUP = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def settings(tmp_path):
    return load_settings({"MLHUB_DATA_DIR": str(tmp_path / "data")})


def earlier_layout(data):
    """What an mlhub before multi-user mode left: umask 022 modes inside a 0700 folder."""
    for sub in ("logs", "artifacts/sha256", "models/alice/iris/abc", "access/alice", "R-library/x"):
        (data / sub).mkdir(parents=True)
    for folder in data.rglob("*"):
        os.chmod(folder, 0o755)
    for name in ("admin_password", "jupyterhub.sqlite", "models/alice/iris/abc/model.pkl"):
        (data / name).write_text("x")
        os.chmod(data / name, 0o644)
    (data / "R-library" / "x" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(data / "R-library" / "x" / "run.sh", 0o700)
    (data / "workspaces" / "carol").mkdir(parents=True)
    os.chmod(data / "workspaces" / "carol", 0o755)
    os.chmod(data, 0o700)


def test_secure_multi_user_closes_everything_but_the_way_in(settings):
    data = settings.data_dir
    earlier_layout(Path(data))
    changed = datadir.secure(settings, multi_user=True)
    assert mode(data) == 0o711 and mode(f"{data}/workspaces") == 0o711
    assert mode(f"{data}/admin_password") == mode(f"{data}/jupyterhub.sqlite") == 0o600
    assert mode(f"{data}/logs") == mode(f"{data}/artifacts") == 0o700
    assert mode(f"{data}/models") == mode(f"{data}/access") == 0o711
    # below them, closed to others until the publisher opens them to their owner
    assert mode(f"{data}/models/alice") == mode(f"{data}/access/alice") == 0o750
    assert mode(f"{data}/workspaces/carol") == 0o750  # until her first spawn hands it to her
    assert mode(f"{data}/R-library/x/run.sh") == 0o755  # every R kernel loads the helper
    assert f"{data}/admin_password" in changed
    assert datadir.secure(settings, multi_user=True) == []  # the next start changes nothing


def test_secure_single_user_keeps_the_folder_to_its_account(settings):
    os.makedirs(settings.data_dir)
    datadir.secure(settings, multi_user=False)
    assert mode(settings.data_dir) == 0o700


@needs_root
def test_grant_owner_lets_the_owners_group_read_and_nobody_change(tmp_path):
    top = tmp_path / "models"
    bundle = top / "alice" / "iris" / "abc"
    (bundle / "sub").mkdir(parents=True)
    (bundle / "model.pkl").write_text("x")
    (bundle / "serve.sh").write_text("#!/bin/sh\n")
    os.chmod(bundle / "serve.sh", 0o700)
    os.chmod(top, 0o700)  # as the publisher made it, umask 077
    account = SystemAccount("mlhub-alice", "alice", NOGROUP, NOGROUP, "/nonexistent")
    datadir.grant_owner(top, bundle, account)
    assert (mode(top), os.stat(top).st_gid) == (0o711, 0)  # passable, still root's
    for folder in (top / "alice", top / "alice" / "iris", bundle, bundle / "sub"):
        assert (os.stat(folder).st_uid, os.stat(folder).st_gid, mode(folder)) == (0, NOGROUP, 0o750)
    assert (os.stat(bundle / "model.pkl").st_gid, mode(bundle / "model.pkl")) == (NOGROUP, 0o640)
    assert mode(bundle / "serve.sh") == 0o750


def test_unreachable_names_the_folder_to_open(tmp_path):
    passable(tmp_path)  # pytest's own folders are 0700
    closed = tmp_path / "closed"
    (closed / "venv").mkdir(parents=True)
    os.chmod(closed / "venv", 0o755)
    os.chmod(closed, 0o700)
    assert datadir.unreachable(closed / "venv") == f"{closed} is mode 700 (no o+x)"
    os.chmod(closed, 0o711)
    assert datadir.unreachable(closed / "venv") is None
    assert datadir.unreachable(closed, read=False) is None  # passing is enough
    assert datadir.unreachable(closed) == f"{closed} is mode 711"


def test_check_shareable_says_what_other_accounts_cannot_use(settings, tmp_path):
    passable(tmp_path)
    os.makedirs(settings.workspaces_dir)
    os.chmod(tmp_path, 0o700)
    with pytest.raises(Conflict) as e:
        datadir.check_shareable(settings)
    assert f"the workspaces ({settings.workspaces_dir}): {tmp_path} is mode 700" in e.value.message
    assert "chmod o+x" in e.value.message
    os.chmod(tmp_path, 0o711)
