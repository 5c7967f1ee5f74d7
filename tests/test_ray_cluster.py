"""A real Ray cluster, started as a separate process the way the README's cluster section says
(``ray get-auth-token --generate``, ``ray start --head`` on loopback, token authentication on), joined
by ``initlab sweep --backend ray --address``; its results equal the local backend's."""
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from initlab.files import read_csv

GRID = 'inits = ["zeros", "kaiming"]\nseeds = 1\nlr = 0.003\ntrain_size = 96\nrecord_every = 4\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def initlab(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "initlab.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def cluster(tmp_path):
    """A one-node Ray cluster with token authentication, on 127.0.0.1; its HOME holds the token."""
    pytest.importorskip("ray")
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        pytest.fail("ray is installed but its command-line tool is not on PATH")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    port = free_port()
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").is_file()
    start = subprocess.run([ray, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                            "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                           env=env, capture_output=True, text=True, timeout=180)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        yield env, f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_sweep_on_a_token_authenticated_cluster_gives_the_local_results(cluster, tmp_path):
    env, address = cluster
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    common = ["--threads", "1", "--quiet"]
    joined = initlab(["sweep", grid, "--backend", "ray", "--address", address, "--out", tmp_path / "ray",
                      *common], env)
    assert joined.returncode == 0, joined.stderr[-3000:]
    local = initlab(["sweep", grid, "--workers", "2", "--out", tmp_path / "local", *common], env)
    assert local.returncode == 0, local.stderr[-3000:]
    acc = {d: {r["init"]: r["test_acc"] for r in read_csv(tmp_path / d / "runs.csv")} for d in ("ray", "local")}
    assert acc["ray"].keys() == acc["local"].keys() == {"zeros", "kaiming"}
    for init, value in acc["local"].items():
        assert acc["ray"][init] == pytest.approx(value, abs=1e-6), init

    # a driver without the token is refused before any work: one line, exit 2, nothing written
    stranger = {**env, "HOME": str(tmp_path / "elsewhere")}
    refused = initlab(["sweep", grid, "--backend", "ray", "--address", address, "--out", tmp_path / "no",
                       *common], stranger, timeout=300)
    assert refused.returncode == 2, refused.stderr[-3000:]
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("initlab: error: cannot join the Ray cluster"), lines
    assert not (tmp_path / "no").exists()
