"""A real one-node Slurm cluster for tests, started by `.ci/slurm-cluster.sh` (Debian's slurmctld,
slurmd and munge on loopback; the script installs them with apt when missing).

Import `slurm_cluster` into a test module to use it. A cluster that cannot start fails the
tests that need it: a scale-out test that silently skips would pass on every machine.
If a cluster is already up under the same state folder (`.ci/run` starts one), it is reused
and left running.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "slurm-cluster.sh"


@dataclass(frozen=True)
class SlurmCluster:
    """How tests reach the cluster: its partition, state folder and the SLURM_CONF clients use."""

    partition: str
    state_dir: Path
    slurm_conf: Path


def _script(action: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """Starts (or reuses) the one-node cluster, points SLURM_CONF at it for the session, and
    stops it afterwards if this fixture started it."""
    state_dir = Path(os.environ.get("HUBKIT_SLURM_DIR", "/tmp/hubkit-slurm"))
    partition = os.environ.get("HUBKIT_SLURM_PARTITION", "debug")
    env = {**os.environ, "HUBKIT_SLURM_DIR": str(state_dir), "HUBKIT_SLURM_PARTITION": partition}
    already_up = _script("status", env, 60).returncode == 0
    if not already_up:
        # Installing the packages takes ~30 s on a clean Debian machine; starting takes ~1 s.
        started = _script("start", env, 900)
        if started.returncode != 0:
            pytest.fail(
                f"could not start the one-node Slurm cluster with {SCRIPT.relative_to(REPO)} start "
                f"(it needs Debian/Ubuntu with apt and root, or slurmctld, slurmd and munge installed):\n"
                f"{started.stderr[-4000:]}",
                pytrace=False,
            )
    conf = state_dir / "slurm.conf"
    previous = os.environ.get("SLURM_CONF")
    # submitit runs sbatch/squeue with this process's environment, and jobs inherit it.
    os.environ["SLURM_CONF"] = str(conf)
    try:
        yield SlurmCluster(partition=partition, state_dir=state_dir, slurm_conf=conf)
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if not already_up:
            _script("stop", env, 120)
