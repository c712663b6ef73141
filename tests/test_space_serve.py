"""`hubkit space serve` as a user runs it: a signal to hubkit stops the app it started, and
nothing it started outlives it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import psutil
import pytest


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_serve_stops_the_app_and_its_children(demo_world, tmp_path, sig):
    cmd = [sys.executable, "-m", "hubkit", "space", "serve", "-m", str(demo_world.paths.manifest), "--out", str(tmp_path / "space")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        url = proc.stdout.readline().strip()  # printed once the app answers
        assert url.startswith("http://127.0.0.1:"), (url, proc.stderr.read() if proc.poll() is not None else "")
        port = urlparse(url).port
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children and _port_open(port)
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_port_open(port) or any(_alive(c) for c in children)):
        time.sleep(0.2)
    survivors = [c for c in children if _alive(c)]
    described = [f"{c.pid} {' '.join(c.cmdline())}" for c in survivors]
    for c in survivors:  # never leave them running, whatever the assertion says
        c.kill()
    assert not survivors, described
    assert not _port_open(port)
    assert "Traceback" not in proc.stderr.read()
