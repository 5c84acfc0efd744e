"""System account names and port owners (mlhub.sysusers); making accounts for real is in
tests/component/test_tenant_isolation.py and test_user_modes.py."""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from mlhub.sysusers import SystemAccount, account_comment, port_owners, system_username

VALID = re.compile(r"[a-z][a-z0-9_-]*")  # what useradd takes on every distribution


@pytest.mark.parametrize(
    "hub_name, expected",
    [("alice", "mlhub-alice"), ("bob-2", "mlhub-bob-2"), ("0xdead", "mlhub-0xdead")],
)
def test_plain_names_are_kept(hub_name, expected):
    assert system_username("mlhub-", hub_name) == expected


NAMES = [
    "a.b",
    "a-b",
    "a_b",
    "Ada",
    "ada",
    "ada@example.org",
    "ada@example.com",
    "名前",
    "x" * 26,
    "x" * 27,
    "x" * 80,
    "ada:root",
    "../etc",
    "",
]


def test_every_hub_name_gets_a_valid_account_of_its_own():
    names = {system_username("mlhub-", n) for n in NAMES}
    assert len(names) == len(NAMES)  # no two hub users share an account
    for name in names:
        assert VALID.fullmatch(name) and len(name) <= 32 and name.startswith("mlhub-"), name
    # a plain name can never be another's hashed one: only hashed names hold "_"
    assert "_" in system_username("mlhub-", "a.b") and "_" not in system_username("mlhub-", "a-b")


def test_the_comment_field_holds_no_separator():
    assert account_comment("alice") == "mlhub alice"
    assert ":" not in account_comment("ada:root") and "," not in account_comment("a,b")


def test_an_account_travels_to_the_fork_server_and_back():
    account = SystemAccount("mlhub-ada", "ada", 1234, 1234, "/w/ada", (1234, 20))
    assert SystemAccount.from_dict(account.to_dict()) == account
    assert account.env() == {
        "USER": "mlhub-ada",
        "LOGNAME": "mlhub-ada",
        "HOME": "/w/ada",
        "SHELL": "/bin/bash",
    }


def test_port_owners_names_whoever_listens():
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", 0))
        port = mine.getsockname()[1]
        assert port_owners(port) == set()  # bound, not listening
        mine.listen()
        assert port_owners(port) == {os.geteuid()}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another account")
def test_port_owners_sees_another_accounts_listener():
    """nobody listens on a port (as a squatter would, on every address): its uid is named."""
    script = (
        "import socket, sys, time; s = socket.socket(socket.AF_INET6); "
        "s.bind(('::', 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c"]
        + [script],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        deadline = time.monotonic() + 10
        while not port_owners(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_owners(port) == {65534}
    finally:
        proc.kill()
        proc.wait()
