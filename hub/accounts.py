"""Login accounts of the embedded mode: names, password hashes, admin flags, groups.

JupyterHub's own default (``DummyAuthenticator``-like setups, PAM as root) would either accept any
password or tie logins to OS users, and the embedded mode runs everyone as one OS user. So mlhub
keeps its own accounts in ``<data_dir>/accounts.sqlite``: a name, a scrypt hash of the password
(never the password), an admin flag and the user's groups. ``mlhub users ...`` manages them;
``mlhub.authenticator.MlhubAuthenticator`` checks them at login. This module does not import
JupyterHub, so ``mlhub users`` starts fast.
"""

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass

from mlhub.errors import BadRequest, Conflict, InvalidName, NotFound

# JupyterHub lower-cases user names; they also name workspace folders, so keep them path-safe.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
GROUP_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Hub admins are put in this JupyterHub group; its role carries custom:mlhub:admin (publisher
# admin), which JupyterHub's own admin role cannot be extended with.
ADMIN_GROUP = "mlhub-admins"

# scrypt cost: about 50 ms and 16 MiB per check, the interactive-login setting of RFC 7914.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 8


def hash_password(password):
    """``scrypt$n$r$p$salt$hash`` (base64 parts): self-describing, so costs can change later."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password, encoded):
    """True if ``password`` matches ``encoded``; the comparison takes constant time."""
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = base64.b64decode(expected)
    digest = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(expected),
    )
    return hmac.compare_digest(digest, expected)


@functools.cache
def _dummy_hash():
    return hash_password(generate_password())


def generate_password():
    """A random password for new accounts (24 URL-safe characters, 144 bits)."""
    return secrets.token_urlsafe(18)


def check_name(name):
    if not NAME_PATTERN.match(name or ""):
        raise InvalidName(
            f"Invalid user name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def check_groups(groups):
    for group in groups:
        if not GROUP_PATTERN.match(group):
            raise InvalidName(
                f"Invalid group name {group!r}: use 1-64 letters, digits, '.', '_' or '-'."
            )
    return sorted(set(groups))


def check_password(password):
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"Password too short: use at least {MIN_PASSWORD_LENGTH} characters.")
    return password


@dataclass(frozen=True)
class Account:
    name: str
    admin: bool
    groups: tuple
    created: float


class AccountStore:
    """The accounts table in one SQLite file (mode 0600), opened per operation.

    Short-lived connections let ``mlhub users ...`` change accounts while the hub runs; SQLite's
    locking serialises the writers.
    """

    def __init__(self, path):
        self.path = str(path)

    def _connect(self):
        if not os.path.exists(self.path):
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(self.path, timeout=30)
        db.execute(
            "CREATE TABLE IF NOT EXISTS accounts ("
            " name TEXT PRIMARY KEY, password_hash TEXT NOT NULL,"
            " admin INTEGER NOT NULL DEFAULT 0, groups TEXT NOT NULL DEFAULT '[]',"
            " created REAL NOT NULL)"
        )
        return db

    @staticmethod
    def _account(row):
        name, admin, groups, created = row
        return Account(
            name=name, admin=bool(admin), groups=tuple(json.loads(groups)), created=created
        )

    def get(self, name):
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT name, admin, groups, created FROM accounts WHERE name = ?", (name,)
            ).fetchone()
        return self._account(row) if row else None

    def list(self):
        with closing(self._connect()) as db:
            rows = db.execute("SELECT name, admin, groups, created FROM accounts ORDER BY name")
            return [self._account(row) for row in rows]

    def add(self, name, password, admin=False, groups=()):
        check_name(name)
        groups = check_groups(groups)
        password_hash = hash_password(check_password(password))
        with closing(self._connect()) as db, db:
            try:
                db.execute(
                    "INSERT INTO accounts (name, password_hash, admin, groups, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, password_hash, int(admin), json.dumps(groups), time.time()),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"An account named {name!r} already exists; "
                    f"use 'mlhub users passwd {name}' to change its password."
                ) from None
        return self.get(name)

    def _update(self, name, column, value):
        with closing(self._connect()) as db, db:
            changed = db.execute(
                f"UPDATE accounts SET {column} = ? WHERE name = ?", (value, name)
            ).rowcount
        if not changed:
            raise NotFound(f"No account named {name!r}; see 'mlhub users list'.")

    def set_password(self, name, password):
        self._update(name, "password_hash", hash_password(check_password(password)))

    def set_admin(self, name, admin):
        self._update(name, "admin", int(admin))

    def set_groups(self, name, groups):
        self._update(name, "groups", json.dumps(check_groups(groups)))

    def delete(self, name):
        with closing(self._connect()) as db, db:
            deleted = db.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount
        if not deleted:
            raise NotFound(f"No account named {name!r}; see 'mlhub users list'.")

    def authenticate(self, name, password):
        """The account if ``password`` is right, else None.

        An unknown name costs the same scrypt work as a wrong password, so response times do not
        tell which names exist.
        """
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT password_hash FROM accounts WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            verify_password(password, _dummy_hash())
            return None
        return self.get(name) if verify_password(password, row[0]) else None

    def ensure_admin(self, name):
        """Create the admin account ``name`` if missing; return its new password, else None."""
        if self.get(name) is not None:
            return None
        password = generate_password()
        self.add(name, password, admin=True)
        return password


def write_secret_file(path, text):
    """Write ``text`` to a file only its owner can read (0600 from creation on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
