"""Who may read what in the data directory.

Multi-user mode (``mlhub up`` as root, ``MlhubSettings.multi_user``): root owns the platform's
state and is the only one who can read it; each user reaches their own workspace, and the
serving processes of a model (which run as its owner, ``mlhub.sysusers``) read that model's
bundles and access list, nothing else::

    <data_dir>/                  root 0711: passable, not listable
      workspaces/                root 0711
        <user>/                  the user's system account, 0700
      models/, access/           root 0711
        <owner>/...              root:<owner's group>, folders 0750, files 0640
      R-library/                 root 0755: the R helper every R kernel loads
      everything else            root 0700 / 0600: the hub and account databases, cookie
                                 secrets, the proxy token, the admin password, the publisher's
                                 store, artifacts, logs, run state

``mlhub up`` runs with umask 077, so whatever the hub, the proxy and the publisher create is
private from the start; ``secure`` sets the modes above at every start, which is also how a data
directory from single-user mode or an earlier version is taken over (workspaces are handed to
their users by ``SystemUsers.ensure``). Single-user mode: the folder is 0700 and everything is
the one account's.
"""

import os
import stat
import sys
from pathlib import Path

from mlhub.errors import Conflict

OWNER_FOLDERS = ("models", "access")  # <folder>/<owner>/...: readable by the owner's account
R_LIBRARY = "R-library"
PASSABLE = 0o711
SHARED_DIR, SHARED_FILE = 0o750, 0o640


def secure(settings, multi_user):
    """Set the modes of the data directory (see the module) at every start; returns the paths
    changed. What is below ``models/``, ``access/`` and the workspaces is only closed to others
    here (a data directory of an earlier version had them 0755); the publisher opens each
    model's folders to its owner again (``grant_owner``) and the spawner hands each workspace to
    its user (``SystemUsers.claim_workspace``)."""
    data = Path(settings.data_dir)
    changed = []

    def chmod(path, mode):
        if stat.S_IMODE(os.lstat(path).st_mode) != mode:
            os.chmod(path, mode)
            changed.append(str(path))

    def close_to_others(folder):
        for entry in os.scandir(folder):
            if not entry.is_symlink():
                chmod(entry.path, stat.S_IMODE(entry.stat().st_mode) & ~0o007)

    chmod(data, PASSABLE if multi_user else 0o700)
    if not multi_user:
        return changed
    workspaces = Path(settings.workspaces_dir)
    workspaces.mkdir(parents=True, exist_ok=True)
    chmod(workspaces, PASSABLE)
    close_to_others(workspaces)
    for entry in os.scandir(data):
        path = Path(entry.path)
        if entry.is_symlink() or path == workspaces:
            continue
        if entry.name in OWNER_FOLDERS and entry.is_dir():
            chmod(path, PASSABLE)
            close_to_others(path)
        elif entry.name == R_LIBRARY and entry.is_dir():
            readable_by_all(path)
        else:
            chmod(path, 0o700 if entry.is_dir() else 0o600)
    return changed


def grant_owner(top, path, account):
    """Let ``account`` (and root) read ``path``, a file or a whole folder below ``top``, and
    nobody else: owner root, group the account's own group, folders 0750 (those between
    ``top`` and ``path`` too; ``top`` itself is root's, 0711) and files 0640 (0750 if
    executable). The account can read but
    not change what it is given: a bundle stays what its digest says."""
    top, path = Path(top), Path(path)
    if stat.S_IMODE(os.stat(top).st_mode) != PASSABLE:
        os.chmod(top, PASSABLE)  # made by the publisher with umask 077
    for folder in [*reversed(path.parents), path]:
        if top not in folder.parents:
            continue
        if folder == path and not path.is_dir():
            break
        os.chown(folder, 0, account.gid)
        os.chmod(folder, SHARED_DIR)
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.lchown(os.path.join(root, name), 0, account.gid)
                os.chmod(os.path.join(root, name), SHARED_DIR)
            for name in files:
                _share_file(os.path.join(root, name), account.gid)
    else:
        _share_file(path, account.gid)


def readable_by_all(top):
    """``chmod -R a+rX,go-w top``: what every account may read (the R helper library)."""
    os.chmod(top, 0o755)
    for root, dirs, files in os.walk(top):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.stat(path).st_mode & 0o100 else 0o644)


def _share_file(path, gid):
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return  # bundles hold no links (mlhub.bundle.unpack); never follow one
    os.chown(path, 0, gid)
    os.chmod(path, 0o750 if st.st_mode & 0o100 else SHARED_FILE)


def unreachable(path, read=True):
    """Why another account cannot use ``path`` (a folder on the way it cannot pass, or, with
    ``read``, the path itself unreadable), or None."""
    path = Path(path).resolve()
    for folder in [*reversed(path.parents), *([] if read else [path])]:
        if not os.stat(folder).st_mode & 0o001:
            return f"{folder} is mode {stat.S_IMODE(os.stat(folder).st_mode):o} (no o+x)"
    mode = os.stat(path).st_mode
    needed = 0o005 if stat.S_ISDIR(mode) else 0o004
    if read and mode & needed != needed:
        return f"{path} is mode {stat.S_IMODE(mode):o}"
    return None


def check_shareable(settings):
    """Multi-user mode: refuse to start where the users' accounts could not run their servers
    or reach their workspaces, naming what to change (a Python under ``/root``, a checkout or
    data folder inside a mode-0700 folder)."""
    import jupyterhub

    import mlhub

    needed = {
        "the Python interpreter": os.path.realpath(sys.executable),
        "the Python standard library": os.__file__,
        "the mlhub environment": sys.prefix,
        "mlhub's code": mlhub.__file__,
        # a file the venv's installer wrote (a umask of 077 there makes every one unreadable)
        "the installed packages": jupyterhub.__file__,
    }
    problems = [(what, path, unreachable(path)) for what, path in needed.items()]
    workspaces = settings.workspaces_dir
    problems.append(("the workspaces", workspaces, unreachable(workspaces, read=False)))
    problems = [f"{what} ({path}): {why}" for what, path, why in problems if why]
    if problems:
        raise Conflict(
            "multi-user mode runs every user's server as their own system account, which "
            "cannot use:\n  "
            + "\n  ".join(problems)
            + "\nlet other accounts pass the folders named (chmod o+x) and read the files (o+r),"
            " or install mlhub with a Python they can run, e.g. 'make up PYTHON=/usr/bin/python3'"
        )
