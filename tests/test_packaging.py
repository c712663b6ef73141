"""The package as a user installs it: a wheel with its own distribution name, templates and Space
files inside, working outside the repo.

"hubkit" on the package index belongs to an unrelated project, so the distribution is
`hubkit-ml`; the import package and the command stay `hubkit`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*argv, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_wheel_is_hubkit_ml_and_installs_into_a_clean_venv(tmp_path):
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, REPO)
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.startswith("hubkit_ml-")
    names = zipfile.ZipFile(wheel).namelist()
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "Name: hubkit-ml\n" in zipfile.ZipFile(wheel).read(meta).decode()
    for shipped in ("hubkit/templates/card/adapter.md.j2", "hubkit/templates/init/hubkit.yaml.j2", "hubkit/space/app.py", "hubkit/space/engine.py", "hubkit/eval/runner_multi.py"):
        assert shipped in names, shipped

    # A new venv with nothing of hubkit in it; its dependencies are borrowed read-only from this
    # environment (a .pth line adds the folder to sys.path, so this environment's own editable
    # hubkit, which is wired through a .pth *inside* that folder, stays invisible).
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "zz-borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "-q", wheel)

    # (run from tmp_path: from the repo root, `python -c` would import the checkout's hubkit/)
    where = _run(py, "-c", "import hubkit, importlib.metadata as m; print(hubkit.__file__); print(m.version('hubkit-ml'))", cwd=tmp_path).stdout.split()
    assert where[0].startswith(str(site)) and where[1] == __import__("hubkit").__version__
    assert _run(venv / "bin" / "hubkit", "--version", cwd=tmp_path).stdout.strip().endswith(where[1])

    # the shipped templates render a real card outside the repo
    example = tmp_path / "seed000"
    shutil.copytree(REPO / "examples" / "seed000", example)
    card = _run(venv / "bin" / "hubkit", "card", "-m", example / "hubkit.yaml", "--out", tmp_path / "cards", "--json", cwd=tmp_path)
    assert '"kind": "adapter"' in card.stdout
    rendered = (tmp_path / "cards" / "nca-arc-lora" / "README.md").read_text()
    assert rendered == (REPO / "examples" / "seed000" / "cards" / "nca-arc-lora" / "README.md").read_text()
