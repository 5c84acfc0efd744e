"""The R code's own unit tests (testthat, from Debian), driven by pytest so CI runs them:
the R serving runtime's pure logic (images/serving-r/tests/testthat) and the R helper package
(extension/mlhub/extension_r/mlhub/tests/testthat), the latter installed the way the hub
installs it for R kernels (``mlhub.rlang.install_helper``)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlhub import rlang

ROOT = Path(__file__).resolve().parents[2]
SERVING_R_TESTS = ROOT / "images" / "serving-r" / "tests" / "testthat"
RUN = """
results <- as.data.frame(testthat::test_dir(commandArgs(TRUE)[1], reporter = "summary",
                                            stop_on_failure = FALSE, env = %s))
cat(sprintf("\\nR TESTS: %%d passed, %%d failed, %%d skipped\\n",
            sum(results$nb) - sum(results$failed) - sum(results$skipped),
            sum(results$failed) + sum(results$error), sum(results$skipped)))
"""


def run_testthat(folder, env_expr, extra_env):
    if rlang.rscript() is None:
        pytest.fail(f"R is not installed: {rlang.INSTALL_HINT} (scripts/system-deps does it)")
    done = subprocess.run(
        ["Rscript", "-e", RUN % env_expr, str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, **extra_env},
        timeout=300,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    summary = [ln for ln in report.splitlines() if ln.startswith("R TESTS:")]
    assert summary, report
    passed, failed = (int(w) for w in summary[-1].split()[2:5:2])
    assert failed == 0 and passed > 0, report
    return passed


def test_serving_runtime_logic():
    runtime = rlang.runtime_dir()
    run_testthat(
        SERVING_R_TESTS,
        "new.env()",
        {"MLHUB_R_RUNTIME": str(runtime / "runtime")},
    )


def test_r_helper_package(tmp_path):
    library = rlang.install_helper(tmp_path / "lib")
    assert (library / "mlhub" / "DESCRIPTION").is_file()
    # a second call with unchanged sources does not reinstall
    stamp = (library / ".mlhub-sources").stat().st_mtime_ns
    rlang.install_helper(library)
    assert (library / ".mlhub-sources").stat().st_mtime_ns == stamp
    env = {"R_LIBS": str(library)}
    env = {**env, **{k: "" for k in ("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_API_TOKEN")}}
    run_testthat(rlang.helper_source() / "tests" / "testthat", 'asNamespace("mlhub")', env)


def test_the_r_runtime_has_the_one_signature_type_table():
    """types.R is generated from hub/mlhub/bundle/signature_types.json (scripts/signature-types),
    the table every Python reader of signatures uses: the two runtimes refuse alike."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "signature-types"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout
