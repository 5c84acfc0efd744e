"""The kubernetes mode's spawner: KubeSpawner with mlhub's profiles and their group checks.

KubeSpawner already turns a ``profile_list`` into a picker and pod settings; what it lacks is
mlhub's rules. A user sees only the profiles their groups allow (``profile_list`` is a
callable over the YAML files, re-read at every spawn page and start), and the same check runs
on the server side with mlhub's messages: a profile or size sent by hand that the user may not
use is refused with 403 before any pod exists. Left to itself KubeSpawner would answer a
filtered-out slug with a bare "No such profile", and a user allowed no profile at all with a
pod of the default image. The profile's kernels are what the pod's server offers, as in the
embedded mode.
"""

from kubespawner import KubeSpawner
from traitlets import Any, default

from mlhub.errors import MlhubError
from mlhub.profiles import profiles_for, resolve_choice, to_profile_list
from mlhub.spawner import ProfileSource, http_error


class ProfileKubeSpawner(ProfileSource, KubeSpawner):
    """KubeSpawner whose ``profile_list`` comes from ``spawner_profiles/``, filtered by group."""

    profile = Any(None, help="The Profile this server runs (set from user_options at start).")
    size = Any(None, help="The Size this server runs (set from user_options at start).")

    @default("profile_list")
    def _default_profile_list(self):
        return self._allowed_profile_list

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._checked_options_from_form

    def _allowed_profile_list(self, spawner):
        """KubeSpawner's ``profile_list`` callable: the profiles this user's groups allow."""
        allowed = profiles_for(self._load_profiles(), self._user_groups(), self.user.admin)
        return to_profile_list(allowed)

    def _resolve(self, user_options):
        """(Profile, Size) for ``user_options``, or an HTTP error the spawn page shows."""
        try:
            return resolve_choice(
                self._load_profiles(), user_options, self._user_groups(), self.user.admin
            )
        except MlhubError as e:
            self.log.warning("Refused %s for %s: %s", user_options, self._log_name, e.message)
            raise http_error(e) from None

    def _checked_options_from_form(self, formdata):
        """KubeSpawner's form parsing, checked at once so a refusal shows on the spawn page."""
        options = self._options_from_form(formdata)
        self._resolve(options)
        return options

    async def load_user_options(self):
        """Check the choice against the user's groups, then let KubeSpawner apply it."""
        self.profile, self.size = self._resolve(self.user_options or {})
        await super().load_user_options()
        self.environment = {**self.environment, "MLHUB_SIZE": self.size.slug}

    def get_args(self):
        args = list(super().get_args())
        if self.profile is not None:
            kernels = list(self.profile.kernels)
            args.append(f"--KernelSpecManager.allowed_kernelspecs={kernels!r}")
            args.append(f"--MappingKernelManager.default_kernel_name={kernels[0]}")
        return args
