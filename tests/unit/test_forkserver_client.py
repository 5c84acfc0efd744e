"""Which starts the local deployer forks from its fork server (``ForkServerClient.fits``), and
that a fork server that is not there yet means a fresh process, not an error."""

import os
import subprocess
from types import SimpleNamespace

import pytest

from mlhub.deployers.forkserver import ForkedProcess, ForkServerClient


def client(tmp_path, fork_server=True):
    settings = SimpleNamespace(data_dir=str(tmp_path), fork_server=fork_server)
    return ForkServerClient(settings, dict)


@pytest.mark.parametrize(
    ("runtime", "manifest", "fits"),
    [
        ("python", {"flavor": "sklearn"}, True),
        ("python", {"flavor": "xgboost"}, False),  # OpenMP threads at load: one load per worker
        ("python", {"flavor": "lightgbm"}, False),
        ("python", {"serialization": "mlflow"}, False),  # a whole MLflow model, any library
        ("r", {}, False),  # R and plumber: not a Python process
    ],
)
def test_only_a_python_model_loaded_before_its_workers_fork_is_forked(
    tmp_path, runtime, manifest, fits
):
    assert client(tmp_path).fits(runtime, manifest) is fits


def test_nothing_is_forked_when_the_fork_server_is_off(tmp_path):
    assert client(tmp_path, fork_server=False).fits("python", {"flavor": "sklearn"}) is False


def test_a_fork_server_not_started_yet_means_a_fresh_process(tmp_path):
    unstarted = client(tmp_path)
    assert unstarted.fork(tmp_path, 8080, 2, "127.0.0.1", {}, tmp_path / "log") is None


def test_a_forked_process_ends_with_its_recorded_code_or_an_unknown_one(tmp_path):
    """The fork server records its children's exit codes; one that died before reaping it
    leaves none."""
    socket = tmp_path / "forkserver.sock"  # the records are beside it, in exits/
    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: its pid runs nothing now
    assert ForkedProcess(ended.pid, tmp_path, socket).poll() == -1
    (tmp_path / "exits").mkdir()
    (tmp_path / "exits" / str(os.getpid())).write_text("0")
    # a live pid working elsewhere (a recycled pid) is not the model's process either
    recycled = ForkedProcess(os.getpid(), tmp_path / "elsewhere", socket)
    assert recycled.poll() == 0 and recycled.returncode == 0
    assert not (tmp_path / "exits" / str(os.getpid())).exists()  # read once, then removed
