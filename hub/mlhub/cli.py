"""The ``mlhub`` command line: ``mlhub up``, ``mlhub users ...``, ``mlhub login``,
``mlhub models ...``, ``mlhub batch`` and ``mlhub images ...``.

``mlhub models`` lives in ``mlhub.cli_models`` (``add_models_parser(subparsers)`` and
``run_models(args)``), ``mlhub batch`` in ``mlhub.batch.cli``, ``mlhub images`` in
``mlhub.image_pipeline.cli``; each is imported when the parser
is built and, if it cannot be imported, replaced by a stub that says why, so ``mlhub up`` and
``mlhub users`` keep working.
"""

import argparse
import os
import sys

from mlhub import __version__
from mlhub.errors import MlhubError

USERS_HELP = """\
Manage the login accounts (stored in <data-dir>/accounts.sqlite, or in MLHUB_ACCOUNTS_DB).
Changes apply while the hub runs, within a minute or at the user's next login. In multi-user
mode (run as root) each account also gets a system account of its own (mlhub-<name>), which
its notebook server and published models run as.
"""


def _common_options():
    """--data-dir and --config, shared by every command that reads the settings. They may come
    before or after a ``users`` action; SUPPRESS keeps an absent one from erasing a given one."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="state folder (default: $MLHUB_DATA_DIR or ./mlhub-data)",
    )
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="mlhub config file, a traitlets Python file (default: $MLHUB_CONFIG_FILE)",
    )
    return common


def _add_users_parser(subparsers, common):
    users = subparsers.add_parser(
        "users", help="manage login accounts", description=USERS_HELP, parents=[common]
    )
    actions = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add", help="create an account and print its password", parents=[common]
    )
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="make the user a hub admin")
    add.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="JupyterHub group (repeat for several); groups unlock restricted profiles",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin instead of generating one",
    )

    actions.add_parser("list", help="list accounts, their groups and admin flag", parents=[common])

    passwd = actions.add_parser(
        "passwd", help="set a new password (generated unless given)", parents=[common]
    )
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")

    set_ = actions.add_parser(
        "set", help="change an account's admin flag or groups", parents=[common]
    )
    set_.add_argument("name")
    admin = set_.add_mutually_exclusive_group()
    admin.add_argument("--admin", dest="admin", action="store_true", default=None)
    admin.add_argument("--no-admin", dest="admin", action="store_false")
    groups = set_.add_mutually_exclusive_group()
    groups.add_argument(
        "--group",
        action="append",
        dest="groups",
        metavar="GROUP",
        help="the account's groups, replacing the current ones (repeat for several)",
    )
    groups.add_argument("--no-groups", dest="groups", action="store_const", const=[])

    delete = actions.add_parser(
        "delete",
        help="delete an account; its system account is locked and its workspace kept",
        parents=[common],
    )
    delete.add_argument("name")
    delete.add_argument(
        "--remove-workspace",
        action="store_true",
        help="also delete the workspace and the system account (cannot be undone)",
    )


def _add_lazy(subparsers, command, help_text, load, extra=None):
    """Register ``command`` from ``load()`` -> ``(add_parser, run)`` and return its runner.

    If the module cannot be imported, a stub says why when the command is used, so a missing
    or broken optional part never takes ``mlhub up`` down; a library missing because mlhub was
    installed without the command's ``extra`` says which extra to install. The runner is also
    the subcommand's ``run`` default, which ``main`` calls."""
    try:
        add_parser, run = load()
    except Exception as e:
        reason = f"{type(e).__name__}: {e}"
        if extra and isinstance(e, ModuleNotFoundError):
            reason = f"it needs mlhub's {extra!r} extra: pip install 'mlhub[{extra}]'; {reason}"
        stub = subparsers.add_parser(
            command, help=f"{help_text} (unavailable)", description=f"Unavailable: {reason}"
        )
        stub.add_argument("rest", nargs=argparse.REMAINDER)

        def run(args):
            print(f"mlhub: 'mlhub {command}' is not available ({reason})", file=sys.stderr)
            return 1

        stub.set_defaults(run=run)
        return run
    add_parser(subparsers).set_defaults(run=run)
    return run


def _models():
    from mlhub.cli_models import add_models_parser, run_models

    return add_models_parser, run_models


def _batch():
    from mlhub.batch.cli import add_batch_parser, run_batch

    return add_batch_parser, run_batch


def _images():
    from mlhub.image_pipeline.cli import add_images_parser, run_images

    return add_images_parser, run_images


def build_parser():
    """The argument parser and the models runner it registered."""
    parser = argparse.ArgumentParser(
        prog="mlhub",
        description="Notebook environments and one-click model publishing on JupyterHub.",
    )
    parser.add_argument("--version", action="version", version=f"mlhub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options()

    up = subparsers.add_parser(
        "up",
        parents=[common],
        help="run the hub on this machine (embedded mode) until Ctrl-C",
        description="Start JupyterHub, its proxy and the publisher; Ctrl-C stops them all.",
    )
    up.add_argument("--port", type=int, help="public port (default: $MLHUB_PORT or 8000)")

    _add_users_parser(subparsers, common)
    login = subparsers.add_parser(
        "login",
        help="get a hub token for mlhub models/batch (no /hub/token page needed)",
        description="Ask the hub for a token with your name and password and keep it in "
        "~/.config/mlhub/tokens.json (0600), where mlhub models and mlhub batch find it.",
    )
    login.add_argument("--url", help="the hub's URL (default: $MLHUB_URL, else the running one)")
    login.add_argument("--user", help="your hub user name (default: asked)")
    login.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    login.add_argument("--days", type=float, default=30, help="days it is valid (default 30)")
    run_models = _add_lazy(subparsers, "models", "manage published models", _models)
    _add_lazy(subparsers, "batch", "score a table with a published model", _batch, "batch")
    _add_lazy(subparsers, "images", "build, test and push the standard images", _images)
    return parser, run_models


def _settings(args):
    """Settings with the command-line options applied through the environment, so the hub and
    its services (child processes) see the same values."""
    from mlhub.settings import CONFIG_FILE_ENV, load_settings

    if getattr(args, "data_dir", None):
        os.environ["MLHUB_DATA_DIR"] = os.path.abspath(args.data_dir)
    if getattr(args, "config", None):
        os.environ[CONFIG_FILE_ENV] = os.path.abspath(args.config)
    if getattr(args, "port", None):
        os.environ["MLHUB_PORT"] = str(args.port)
    return load_settings()


def _read_password(from_stdin):
    """(password, generated?) from stdin (first line) or newly generated."""
    from mlhub.accounts import generate_password

    if from_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    return generate_password(), True


def _users_list(store, args, settings):
    accounts = store.list()
    width = max([len(a.name) for a in accounts] + [4])
    print(f"{'NAME':<{width}}  ADMIN  GROUPS")
    for a in accounts:
        print(f"{a.name:<{width}}  {'yes' if a.admin else 'no':<5}  {', '.join(a.groups)}")
    return 0


def _check_single_user(store, settings):
    """Single-user mode runs every account's code as one system account: a second account
    would share everything with the first, so it is refused unless asked for."""
    from mlhub.errors import Conflict

    single = settings.mode == "embedded" and not settings.multi_user  # pods isolate in k8s mode
    if not single or settings.shared_single_user or not store.list():
        return
    raise Conflict(
        "single-user mode (mlhub runs as this account, not root): everything every account "
        "runs would share this account's rights, files and the platform's secrets, so a second "
        "account is refused. For a team, run mlhub as root (multi-user mode: a system account "
        "per user); to share anyway, set c.MlhubSettings.shared_single_user = True "
        "(MLHUB_SHARED_SINGLE_USER=1)."
    )


def _users_add(store, args, settings):
    _check_single_user(store, settings)
    users = settings.system_users()
    password, generated = _read_password(args.password_stdin)
    account = store.add(args.name, password, admin=args.admin, groups=args.group)
    system = None
    if users is not None:
        try:
            system = users.ensure(account.name, unlock=True)
        except MlhubError:
            store.delete(account.name)  # no half-made user: nothing of theirs could run
            raise
    print(f"created {'admin ' if account.admin else ''}account {account.name!r}", end="")
    print(f" in groups {', '.join(account.groups)}" if account.groups else "")
    if system is not None:
        print(f"system account {system.name!r} (uid {system.uid}), workspace {system.home}")
    if generated:
        print(f"password: {password}")
    return 0


def _users_passwd(store, args, settings):
    from mlhub.accounts import write_secret_file

    password, generated = _read_password(args.password_stdin)
    store.set_password(args.name, password)
    admin_file = settings.path("admin_password")
    if args.name == settings.admin_user and os.path.exists(admin_file):
        write_secret_file(admin_file, password + "\n")
    print(f"password of {args.name!r} changed")
    if generated:
        print(f"password: {password}")
    return 0


def _users_set(store, args, settings):
    if args.admin is None and args.groups is None:
        print("mlhub: nothing to change: give --admin/--no-admin or --group/--no-groups")
        return 2
    if args.admin is not None:
        store.set_admin(args.name, args.admin)
    if args.groups is not None:
        store.set_groups(args.name, args.groups)
    account = store.get(args.name)
    groups = ", ".join(account.groups) or "none"
    print(f"{account.name!r}: admin {'yes' if account.admin else 'no'}, groups {groups}")
    return 0


def _users_delete(store, args, settings):
    store.delete(args.name)
    users = settings.system_users()
    workspace = settings.workspace(args.name)
    if args.remove_workspace:
        if users is not None:
            users.remove(args.name, workspace=True)
        else:
            import shutil

            shutil.rmtree(workspace, ignore_errors=True)
        print(f"deleted account {args.name!r} and its workspace {workspace}")
        return 0
    if users is not None:
        users.lock(args.name)
        print(f"deleted account {args.name!r}; system account {users.name(args.name)!r} locked")
    else:
        print(f"deleted account {args.name!r}")
    print(f"workspace kept in {workspace}")
    return 0


USERS_ACTIONS = {
    "list": _users_list,
    "add": _users_add,
    "passwd": _users_passwd,
    "set": _users_set,
    "delete": _users_delete,
}


def _users_settings(args):
    """The settings of the instance a ``users`` command means: the data folder given
    (``--data-dir``, ``MLHUB_DATA_DIR``, the config file; made if new, so accounts can be set
    up before the first ``mlhub up``), else ``./mlhub-data`` if it exists, else the one
    ``mlhub up`` this account runs. With none of these it refuses: run from another folder,
    it used to make a new ``./mlhub-data`` whose accounts no hub reads."""
    from mlhub import instances
    from mlhub.settings import load_settings

    settings = _settings(args)
    explicit = "MLHUB_DATA_DIR" in os.environ or "data_dir" in settings.config.get(
        "MlhubSettings", {}
    )
    if explicit or os.path.isdir(settings.data_dir) or settings.accounts_db:
        return settings  # (accounts in a database of their own need no data folder)
    how = "give --data-dir DIR (or set MLHUB_DATA_DIR)"
    if one := instances.the_running_one("its data folder", how):
        os.environ["MLHUB_DATA_DIR"] = one["data_dir"]
        if one.get("config_file") and not getattr(args, "config", None):
            os.environ["MLHUB_CONFIG_FILE"] = one["config_file"]  # its settings, e.g. prefix
        return load_settings()
    raise MlhubError(
        f"there is no mlhub data folder here ({settings.data_dir}) and no 'mlhub up' runs for "
        f"this account: run the command in the folder where 'mlhub up' runs, or {how}"
    )


def run_users(args, settings):
    from mlhub.accounts import AccountStore

    settings.check_user_mode()
    os.umask(0o077)  # the account database and secrets are the platform's alone (mlhub.datadir)
    store = AccountStore(settings.accounts_location())
    return USERS_ACTIONS[args.users_command](store, args, settings)


def run_login(args):
    import getpass

    from mlhub.logins import login, tokens_file
    from mlhub.publisher.client import hub_url

    url = args.url or os.environ.get("MLHUB_URL") or hub_url()
    user = args.user or input(f"hub user at {url}: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password of {user}: ")
    answer = login(url, user, password, days=args.days)
    print(f"logged in to {url} as {user}; token stored in {tokens_file()}", end="")
    print(f" (expires {answer['expires_at']})" if answer.get("expires_at") else "")
    return 0


def main(argv=None):
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("models", "batch", "images"):
            return args.run(args)
        if args.command == "login":
            return run_login(args)
        if args.command == "up":
            from mlhub.up import up

            return up(_settings(args))
        return run_users(args, _users_settings(args))
    except MlhubError as e:
        print(f"mlhub: error: {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
