"""JupyterHub login against mlhub's accounts (``mlhub.accounts``, managed with ``mlhub users``).

It hands JupyterHub the account's admin flag and groups (``manage_groups``), so group-restricted
profiles and publisher admin rights follow the account. Other authenticators (OAuth/OIDC, LDAP)
replace this one with one setting in the mlhub config file, e.g.
``c.JupyterHub.authenticator_class = "oauthenticator.GenericOAuthenticator"``.
"""

import asyncio

from jupyterhub.auth import Authenticator
from traitlets import Unicode, default

from mlhub.accounts import ADMIN_GROUP, AccountStore
from mlhub.settings import hub_settings


class MlhubAuthenticator(Authenticator):
    """JupyterHub login against mlhub's account store (``mlhub users ...``).

    Wrong passwords and unknown names are refused alike. The account's admin flag and groups are
    handed to JupyterHub at login and re-read every minute (``auth_refresh_age``) and before each
    spawn (``refresh_pre_spawn``), so ``mlhub users set --group`` applies within a minute without
    a new login, and a deleted account is logged out.
    """

    accounts_file = Unicode(
        help="""The accounts database (a SQLite file or a PostgreSQL URL). Default:
        ``MlhubSettings.accounts_db``, where ``mlhub users`` keeps them too
        (``<MlhubSettings.data_dir>/accounts.sqlite`` unless set).
        Example: ``c.MlhubAuthenticator.accounts_file = "/srv/mlhub/accounts.sqlite"``.
        """,
    ).tag(config=True)

    @default("accounts_file")
    def _default_accounts_file(self):
        return hub_settings().accounts_location()

    @default("manage_groups")
    def _default_manage_groups(self):
        return True

    @default("refresh_pre_spawn")
    def _default_refresh_pre_spawn(self):
        return True

    @default("auth_refresh_age")
    def _default_auth_refresh_age(self):
        # re-read the account (groups, admin, existence) at most a minute after a change
        return 60

    @property
    def store(self):
        return AccountStore(self.accounts_file)

    @staticmethod
    def _auth_model(account):
        groups = set(account.groups) | ({ADMIN_GROUP} if account.admin else set())
        return {"name": account.name, "admin": account.admin, "groups": sorted(groups)}

    async def authenticate(self, handler, data):
        name, password = data.get("username", ""), data.get("password", "")
        account = await asyncio.to_thread(self.store.authenticate, name, password)
        if account is None:
            self.log.warning("Failed login for %r", name)
            return None
        return self._auth_model(account)

    async def refresh_user(self, user, handler=None):
        account = await asyncio.to_thread(self.store.get, user.name)
        if account is None:
            self.log.info("Account %r no longer exists; logging it out", user.name)
            return False
        return self._auth_model(account)
