"""One system account per hub user: the multi-user mode of the embedded hub.

As in The Littlest JupyterHub, each hub user gets a Unix account of their own
(``<prefix><name>``, e.g. ``mlhub-alice``) and everything of theirs runs under it: the notebook
server with its kernels and terminals (``mlhub.spawner``), and the serving processes of their
published models (``mlhub.deployers.local``). Isolation is then the operating system's: another
user's files, processes and ``/proc/<pid>/environ`` are out of reach, and the platform's state
is readable by root alone (``mlhub.datadir``). The accounts are made with ``useradd`` (the
system's own tool, so ``/etc/passwd``, ``/etc/shadow`` and ``/etc/group`` stay consistent and
locked), have no password (nobody logs in to them; the hub starts their processes with
setuid/setgid as JupyterHub's ``LocalProcessSpawner`` does), and carry ``mlhub <hub name>`` in
their comment field, so mlhub never takes over an account it did not make.

This module needs only the standard library: the serving runtime's fork server (``mlhub.serving``)
use ``demote`` too.
"""

import hashlib
import os
import pwd
import re
import shutil
import subprocess
import urllib.parse
from dataclasses import asdict, dataclass

from mlhub.errors import Conflict, MlhubError

# what useradd accepts everywhere, and at most 32 characters (utmp, ps and ls show them whole)
MAX_NAME = 32
_PLAIN = re.compile(r"[a-z0-9][a-z0-9-]*")
_HASH_CHARS = 10
SHELL = "/bin/bash"


def account_comment(hub_name):
    """The comment (GECOS) field that marks an account as mlhub's for ``hub_name``: no ':'
    (the field separator) or ',' (its sub-field separator), whatever the hub name holds."""
    return "mlhub " + urllib.parse.quote(hub_name, safe="@._+-")


def system_username(prefix, hub_name):
    """The system account name of hub user ``hub_name``: ``<prefix><hub_name>`` when that is a
    plain name (lower-case letters, digits, '-') of at most 32 characters, else the prefix, a
    cleaned and shortened form, ``_`` and a hash of the full name. Only hashed names contain
    ``_``, so two hub users never share an account (``a.b`` and ``a-b`` differ)."""
    if _PLAIN.fullmatch(hub_name) and len(prefix) + len(hub_name) <= MAX_NAME:
        return prefix + hub_name
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:_HASH_CHARS]
    room = MAX_NAME - len(prefix) - 1 - _HASH_CHARS
    cleaned = re.sub(r"[^a-z0-9-]+", "-", hub_name.lower()).strip("-")[:room].rstrip("-")
    return f"{prefix}{cleaned}_{digest}"


@dataclass(frozen=True)
class SystemAccount:
    """A hub user's system account: what a process needs to become it."""

    name: str
    hub_name: str
    uid: int
    gid: int
    home: str
    gids: tuple = ()

    def env(self):
        """The login variables of a process running as this account."""
        return {"USER": self.name, "LOGNAME": self.name, "HOME": self.home, "SHELL": SHELL}

    def preexec(self, chdir=None, umask=0o022, before=None):
        """Code for ``Popen(preexec_fn=...)``: run ``before`` (still root: joining a cgroup),
        then become this account (``demote``), then ``chdir``."""

        def become():
            if before is not None:
                before()
            demote(self.uid, self.gid, self.gids, umask)
            if chdir:
                os.chdir(chdir)

        return become

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**{**data, "gids": tuple(data.get("gids", ()))})


def demote(uid, gid, gids, umask=0o022):
    """Become ``uid``/``gid`` with exactly the supplementary groups ``gids``, for good: as
    JupyterHub's ``set_user_setuid``, group first (setuid gives up the right to change it), and
    refusing to go on with any group or id left over."""
    os.setgid(gid)
    os.setgroups(list(gids))
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != gid:
        raise PermissionError(f"could not become uid {uid} / gid {gid}")
    os.umask(umask)


def _run(*cmd):
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise MlhubError(f"{' '.join(cmd)} failed: {result.stderr.strip() or result.returncode}")


class SystemUsers:
    """The system accounts of the hub users: made, found, locked and removed with the
    system's own tools (``useradd``, ``usermod``, ``userdel``). Needs root to change them.

    ``workspace(hub_name)`` is each account's home directory: the user's workspace folder
    (``MlhubSettings.workspace``), made and owned by the account, mode 0700."""

    def __init__(self, prefix, workspace):
        self.prefix = prefix
        self.workspace = workspace

    def name(self, hub_name):
        return system_username(self.prefix, hub_name)

    def get(self, hub_name):
        """The account of ``hub_name`` if it exists and is mlhub's, else None."""
        try:
            entry = pwd.getpwnam(self.name(hub_name))
        except KeyError:
            return None
        self._check_ours(entry, hub_name)
        gids = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        home = self.workspace(hub_name)
        return SystemAccount(entry.pw_name, hub_name, entry.pw_uid, entry.pw_gid, home, gids)

    def _check_ours(self, entry, hub_name):
        """Refuse an account mlhub did not make for ``hub_name`` of this hub: another mlhub
        on the machine (another data directory) has people of its own."""
        if entry.pw_gecos != account_comment(hub_name) or entry.pw_uid == 0:
            raise Conflict(
                f"the system account {entry.pw_name!r} (uid {entry.pw_uid}) exists but was not "
                f"made by mlhub for {hub_name!r} (its comment is {entry.pw_gecos!r}); remove it "
                "or set c.MlhubSettings.system_user_prefix to another prefix"
            )
        if entry.pw_dir != self.workspace(hub_name):
            raise Conflict(
                f"the system account {entry.pw_name!r} belongs to another mlhub on this machine "
                f"(its home is {entry.pw_dir}; this hub's workspace of {hub_name!r} is "
                f"{self.workspace(hub_name)}). A second mlhub needs its own "
                "c.MlhubSettings.system_user_prefix; if this data directory was moved, run: "
                f"usermod --home {self.workspace(hub_name)} {entry.pw_name}"
            )

    def ensure(self, hub_name, unlock=False):
        """The account of ``hub_name``, made now if missing (with ``unlock``, unlocked if
        ``lock`` locked it: an account added again), with its workspace made or taken over
        (``claim_workspace``)."""
        account = self.get(hub_name)
        if account is None:
            name = self.name(hub_name)
            try:
                _run(
                    "useradd",
                    "--comment",
                    account_comment(hub_name),
                    "--home-dir",
                    self.workspace(hub_name),
                    "--no-create-home",
                    "--shell",
                    SHELL,
                    "--user-group",
                    name,
                )
            except MlhubError:
                if self.get(hub_name) is None:  # not made by a concurrent start either
                    raise
            account = self.get(hub_name)
        elif unlock:
            _run("usermod", "--expiredate", "", account.name)  # see lock
        self.claim_workspace(account)
        return account

    def claim_workspace(self, account):
        """Make the workspace the account's own (mode 0700). A workspace still owned by root,
        from single-user mode or an earlier version, is handed over whole (``chown -R``,
        never following links); one owned by another account is refused."""
        home = account.home
        os.makedirs(os.path.dirname(home), exist_ok=True)
        try:
            os.mkdir(home, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(home)
        if st.st_uid == 0:
            chown_tree(home, account.uid, account.gid)
        elif st.st_uid != account.uid:
            raise Conflict(
                f"the workspace {home} belongs to uid {st.st_uid}, not to {account.name} "
                f"(uid {account.uid}); give it to them with chown -R or move it away"
            )
        os.chmod(home, 0o700)

    def lock(self, hub_name):
        """Expire the account (nobody can log in to it, ``su`` included); its files stay."""
        name = self.name(hub_name)
        if self.get(hub_name) is not None:
            _run("usermod", "--expiredate", "1", name)

    def remove(self, hub_name, workspace=False):
        """Delete the account, and with ``workspace`` its workspace folder too."""
        account = self.get(hub_name)
        if account is not None:
            _run("userdel", account.name)
        if workspace:
            shutil.rmtree(self.workspace(hub_name), ignore_errors=True)


def chown_tree(top, uid, gid):
    """``chown -R uid:gid top`` without following symbolic links."""
    os.lchown(top, uid, gid)
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def port_owners(port):
    """The uids of the processes listening on TCP ``port`` at any local address
    (``/proc/net/tcp`` and ``tcp6``); empty if nothing listens there. On one machine any
    account may bind a port another account's server just gave up, so the deployer checks whom
    a port belongs to before it sends anyone's requests there."""
    owners = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # fields: sl, local address, remote address, state (0A: LISTEN), ..., uid
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        owners.add(int(fields[7]))
        except OSError:
            continue
    return owners
