"""Run inside an eval environment (hubkit is not installed there): report versions and hardware.

Prints one JSON object, using the standard library only: importing torch to ask about CUDA costs
seconds, so the CUDA build is read from torch's version file and the GPUs from nvidia-smi. Never
fails on a missing package, since "not installed" is itself a fact to record. (Whether CUDA
really works, driver included, shows in the eval attempt itself, which records its error.)
"""

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata

PACKAGES = ["lm_eval", "transformers", "peft", "bitsandbytes", "accelerate", "torch", "datasets", "tokenizers", "numpy", "safetensors", "vllm"]


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _ram_gb():
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _package_dir(name):
    # find_spec locates a package without importing it (lm_eval's import pulls in torch).
    try:
        from importlib.util import find_spec

        spec = find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _nvidia_gpus():
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append({"name": name.strip(), "memory_gb": round(float(mem) / 1024, 1)})
        except ValueError:
            continue
    return gpus


def collect():
    info = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "lm_eval_dir": _package_dir("lm_eval"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "cuda_available": False,
        "cuda_version": None,
        "gpus": [],
    }
    torch_dir = _package_dir("torch")
    if torch_dir:
        try:
            with open(os.path.join(torch_dir, "version.py"), encoding="utf-8") as fh:
                m = re.search(r"^cuda\s*(?::\s*[^=]+)?=\s*['\"]([^'\"]+)['\"]", fh.read(), re.MULTILINE)
            info["cuda_version"] = m.group(1) if m else None
        except OSError:
            pass
    info["gpus"] = _nvidia_gpus()
    info["cuda_available"] = bool(info["cuda_version"] and info["gpus"])
    return info


def main():
    json.dump(collect(), sys.stdout)


if __name__ == "__main__":
    main()
