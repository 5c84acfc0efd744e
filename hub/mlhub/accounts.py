"""Login accounts: names, password hashes, admin flags, groups.

JupyterHub's own default (``DummyAuthenticator``-like setups, PAM as root) would either accept any
password or tie logins to OS users. So mlhub keeps its own accounts in
``<data_dir>/accounts.sqlite`` (or a PostgreSQL table, ``MlhubSettings.accounts_db``): a name, a
scrypt hash of the password (never the password), an admin flag and the user's groups.
``mlhub users ...`` manages them; ``mlhub.authenticator.MlhubAuthenticator`` checks them at
login. This module does not import JupyterHub, so ``mlhub users`` starts fast.
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

from mlhub.errors import BadRequest, Conflict, InvalidName, MlhubError, NotFound

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


POSTGRES_URL = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://", re.IGNORECASE)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {table} ("
    " name TEXT PRIMARY KEY, password_hash TEXT NOT NULL,"
    " admin INTEGER NOT NULL DEFAULT 0, \"groups\" TEXT NOT NULL DEFAULT '[]',"
    " created DOUBLE PRECISION NOT NULL)"
)


class AccountStore:
    """The accounts table, opened per operation: in one SQLite file (mode 0600), or in
    PostgreSQL when ``location`` is a ``postgresql://`` URL.

    Short-lived connections let ``mlhub users ...`` change accounts while the hub runs; the
    database's locking serialises the writers.
    """

    def __init__(self, location):
        self.location = str(location)
        self.postgres = bool(POSTGRES_URL.match(self.location))
        self.table = "mlhub_accounts" if self.postgres else "accounts"

    def _connect(self):
        db = _Postgres.connect(self.location) if self.postgres else self._sqlite()
        db.execute(SCHEMA.format(table=self.table))
        return db

    def _sqlite(self):
        if not os.path.exists(self.location):
            os.makedirs(os.path.dirname(self.location) or ".", exist_ok=True)
            os.close(os.open(self.location, os.O_CREAT | os.O_WRONLY, 0o600))
        return sqlite3.connect(self.location, timeout=30)

    @staticmethod
    def _account(row):
        name, admin, groups, created = row
        return Account(
            name=name, admin=bool(admin), groups=tuple(json.loads(groups)), created=created
        )

    def get(self, name):
        with closing(self._connect()) as db:
            row = db.execute(
                f'SELECT name, admin, "groups", created FROM {self.table} WHERE name = ?', (name,)
            ).fetchone()
        return self._account(row) if row else None

    def list(self):
        with closing(self._connect()) as db:
            rows = db.execute(
                f'SELECT name, admin, "groups", created FROM {self.table} ORDER BY name'
            )
            return [self._account(row) for row in rows]

    def add(self, name, password, admin=False, groups=()):
        check_name(name)
        groups = check_groups(groups)
        password_hash = hash_password(check_password(password))
        with closing(self._connect()) as db, db:
            try:
                db.execute(
                    f'INSERT INTO {self.table} (name, password_hash, admin, "groups", created)'
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
                f'UPDATE {self.table} SET "{column}" = ? WHERE name = ?', (value, name)
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
            deleted = db.execute(f"DELETE FROM {self.table} WHERE name = ?", (name,)).rowcount
        if not deleted:
            raise NotFound(f"No account named {name!r}; see 'mlhub users list'.")

    def authenticate(self, name, password):
        """The account if ``password`` is right, else None.

        An unknown name costs the same scrypt work as a wrong password, so response times do not
        tell which names exist.
        """
        with closing(self._connect()) as db:
            row = db.execute(
                f"SELECT password_hash FROM {self.table} WHERE name = ?", (name,)
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


class _Postgres:
    """A psycopg connection that behaves as the sqlite3 module's does where AccountStore relies
    on it (``?`` placeholders, sqlite3.IntegrityError, commit on leaving ``with``), so one set
    of statements serves both databases."""

    def __init__(self, conn):
        self.conn = conn

    @classmethod
    def connect(cls, url):
        import psycopg

        # libpq reads postgresql:// URIs itself; SQLAlchemy's "+driver" part is not its
        conninfo = POSTGRES_URL.sub("postgresql://", url)
        try:
            return cls(psycopg.connect(conninfo, connect_timeout=10))
        except psycopg.OperationalError as e:
            where = _where(conninfo)
            raise MlhubError(
                f"cannot open the accounts database {where}: {str(e).strip()} (check "
                "MlhubSettings.accounts_db / MLHUB_ACCOUNTS_DB, and PGPASSWORD for its password)"
            ) from None

    def execute(self, sql, params=()):
        import psycopg

        try:
            return self.conn.execute(sql.replace("?", "%s"), params)
        except psycopg.IntegrityError as e:
            raise sqlite3.IntegrityError(str(e)) from e

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # like sqlite3's: commit, or roll back on an exception (the connection stays open)
        if exc[0] is None:
            self.conn.commit()
        else:
            self.conn.rollback()


def _where(conninfo):
    """``host/dbname`` of a connection URL, never its password."""
    import psycopg.conninfo

    try:
        parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "(an unreadable URL)"
    return f"{parts.get('host', 'localhost')}/{parts.get('dbname', '')}"


def write_secret_file(path, text):
    """Write ``text`` to a file only its owner can read (0600 from creation on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
