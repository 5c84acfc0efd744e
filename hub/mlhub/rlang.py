"""R beside Python: where R and mlhub's R code are, and the commands that use them.

R models are served by the R runtime (``images/serving-r``: plumber, started with
``Rscript serve.R``) and published from R notebooks with the R helper package
(``extension/mlhub/extension_r/mlhub``). Both ship as package data of ``mlhub.serving_r`` and
``mlhub.extension_r``; this module is the one place that finds them and R itself, so a machine
without R gets one clear message naming the Debian packages to install.
"""

import hashlib
import os
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

from mlhub.datadir import readable_by_all
from mlhub.errors import InvalidBundle

RSCRIPT = "Rscript"
# What the R runtime and helper need from Debian (README: "R models").
DEBIAN_PACKAGES = (
    "r-base-core",
    "r-cran-plumber",
    "r-cran-jsonlite",
    "r-cran-yaml",
    "r-cran-curl",
    "r-cran-irkernel",
)
INSTALL_HINT = (
    "install R from the OS packages where models are served, e.g. "
    f"`apt-get install {' '.join(DEBIAN_PACKAGES)}` on Debian/Ubuntu"
)
HELPER_PACKAGE = "mlhub"


def rscript():
    """The ``Rscript`` on ``PATH``, or ``None`` when R is not installed."""
    return shutil.which(RSCRIPT)


def require_r(what="an R model"):
    """``Rscript``'s path; raise ``InvalidBundle`` saying how to install R if it is missing."""
    found = rscript()
    if found is None:
        raise InvalidBundle(
            f"{what} needs R, which is not installed on this machine: {INSTALL_HINT}",
            {"field": "runtime", "runtime": "r", "missing": RSCRIPT},
        )
    return found


def runtime_dir():
    """The R serving runtime's folder (``serve.R`` and ``runtime/``)."""
    return Path(str(files("mlhub.serving_r")))


def serve_script():
    return runtime_dir() / "serve.R"


def helper_source():
    """The R helper package's source folder (DESCRIPTION, NAMESPACE, R/):
    ``extension/mlhub/extension_r/mlhub`` (the R images install it from there too)."""
    return Path(str(files("mlhub.extension_r"))) / HELPER_PACKAGE


def _sources_digest(root):
    digest = hashlib.sha256()
    sources = [root / "DESCRIPTION", root / "NAMESPACE", *(root / "R").glob("*.R")]
    for path in sorted(p for p in sources if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def install_helper(library):
    """Install the R helper package into the R library folder ``library`` if it is missing
    or older than its sources; return ``library``. Kernels find it through ``R_LIBS``.

    A stamp file holds the digest of the sources it was installed from, so this costs one
    hash of a few small files when nothing changed, and ``R CMD INSTALL`` (a few seconds)
    after an upgrade.
    """
    library = Path(library)
    source = helper_source()
    stamp = library / f".{HELPER_PACKAGE}-sources"
    wanted = _sources_digest(source)
    if stamp.is_file() and stamp.read_text() == wanted and (library / HELPER_PACKAGE).is_dir():
        return library
    r = shutil.which("R")
    if r is None:
        raise InvalidBundle(f"the mlhub R helper needs R: {INSTALL_HINT}", {"missing": "R"})
    library.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [r, "CMD", "INSTALL", "--no-test-load", "--no-docs", "-l", str(library), str(source)],
        capture_output=True,
        text=True,
        env={**os.environ, "R_LIBS_USER": str(library)},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"R CMD INSTALL of the mlhub R helper failed:\n{result.stderr[-2000:]}")
    stamp.write_text(wanted)
    readable_by_all(library)  # installed by the hub (root, umask 077), loaded by every user
    return library
