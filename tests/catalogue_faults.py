"""Real disk faults for the error catalogue: a folder on a tiny file system (ENOSPC) and a folder on
a read-only one (EROFS).

As root with CAP_SYS_ADMIN (this CI, most dev containers run as root) each is a real tmpfs
mount, so the kernel itself refuses the write wherever it happens (in Python, in a Rust extension,
in a child process). Elsewhere the fault cannot be made for real: a non-root user gets a real
EACCES from `chmod 0o555` for read-only, and ENOSPC is injected at open/mkdir/rename time through
a Python audit hook (which covers this process's Python writes, not child processes or native
code). `Fault.real` says which one a test got. HUBKIT_TEST_FAULTS=inject forces the fallback, to
check it on a machine that can mount.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_INJECTED: dict[str, int] = {}  # folder -> errno, for the audit hook
# HUBKIT_TEST_FAULTS=inject takes the fallback even where a mount would work (to check it).
_FORCE_INJECT = os.environ.get("HUBKIT_TEST_FAULTS") == "inject"
_HOOKED = False
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _hook(event: str, args: tuple) -> None:
    if not _INJECTED:
        return
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE_FLAGS)
        paths = [path] if writing else []
    elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.symlink", "os.link", "os.chmod", "os.truncate"):
        paths = [a for a in args[:2]]
    else:
        return
    for p in paths:
        if isinstance(p, (str, bytes, os.PathLike)):
            text = os.fsdecode(os.fspath(p))
            for folder, code in _INJECTED.items():
                # a full disk still makes folders and renames; only new data does not fit
                if (text == folder or text.startswith(folder + os.sep)) and (code != errno.ENOSPC or event == "open"):
                    raise OSError(code, os.strerror(code), text)


def _install_hook() -> None:
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_hook)  # hooks cannot be removed: it does nothing while _INJECTED is empty
        _HOOKED = True


def _mount(target: Path, options: str) -> bool:
    if _FORCE_INJECT or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return proc.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


@dataclass
class Fault:
    path: Path
    real: bool  # made by the kernel (a mount or permissions), not injected
    errno: int


@contextmanager
def full_disk(path: Path, *, size: str = "64k"):
    """`path` (created) lies on a file system with `size` bytes: writing more gives ENOSPC."""
    path.mkdir(parents=True, exist_ok=True)
    if _mount(path, f"size={size},mode=0755"):
        try:
            yield Fault(path, True, errno.ENOSPC)
        finally:
            _umount(path)
        return
    _install_hook()
    _INJECTED[str(path)] = errno.ENOSPC
    try:
        yield Fault(path, False, errno.ENOSPC)
    finally:
        _INJECTED.pop(str(path), None)


@contextmanager
def read_only(path: Path):
    """`path` (created, empty) cannot be written to: a read-only mount (EROFS), or for a
    non-root user a folder without write permission (EACCES)."""
    path.mkdir(parents=True, exist_ok=True)
    if _mount(path, "size=64k,ro"):
        try:
            yield Fault(path, True, errno.EROFS)
        finally:
            _umount(path)
        return
    if os.geteuid() != 0 and not _FORCE_INJECT:
        path.chmod(0o555)
        try:
            yield Fault(path, True, errno.EACCES)
        finally:
            path.chmod(0o755)
        return
    _install_hook()
    _INJECTED[str(path)] = errno.EROFS
    try:
        yield Fault(path, False, errno.EROFS)
    finally:
        _INJECTED.pop(str(path), None)
