"""Run inside an eval environment (hubkit is not installed there): report versions and hardware.

Prints one JSON object. Standard library plus whatever of torch is importable; never fails on a
missing package, since "not installed" is itself a fact to record.
"""

import json
import os
import platform
import sys
from importlib import metadata

PACKAGES = ["lm_eval", "transformers", "peft", "bitsandbytes", "accelerate", "torch", "datasets", "tokenizers", "numpy", "safetensors"]


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


def main():
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
    try:
        import torch

        info["cuda_available"] = bool(torch.cuda.is_available())
        info["cuda_version"] = torch.version.cuda
        if info["cuda_available"]:
            info["gpus"] = [
                {"name": torch.cuda.get_device_name(i), "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 1e9, 1)}
                for i in range(torch.cuda.device_count())
            ]
    except Exception as exc:  # a broken torch is a fact too
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
    json.dump(info, sys.stdout)


if __name__ == "__main__":
    main()
