"""Scale-out: run units of work in this process, locally (a GPU pool), on Slurm (submitit job
arrays) or on Hugging Face Jobs, and keep a matrix state file so reruns do only what is missing.

Units are generic picklable callables; nothing here knows about evaluation (`hubkit.eval.units`
makes eval units). Every executor implements `Executor`. `SlurmExecutor` needs the `scaleout`
extra (submitit) and `HfJobsExecutor` huggingface_hub; both are imported on first use.
"""

from hubkit.scaleout.inline import InlineExecutor
from hubkit.scaleout.local import GpuPool, LocalExecutor, visible_gpus
from hubkit.scaleout.matrix import Matrix, MatrixRun, format_duration, render_view
from hubkit.scaleout.units import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    STATES,
    Executor,
    Handle,
    Resources,
    ScaleoutError,
    Unit,
    UnitFailed,
    UnitStatus,
    unit_id,
)

__all__ = [
    "CANCELLED", "DONE", "FAILED", "QUEUED", "RUNNING", "STATES",
    "Executor", "GpuPool", "Handle", "HfJobsExecutor", "InlineExecutor", "LocalExecutor", "Matrix", "MatrixRun", "Resources",
    "ScaleoutError", "SlurmExecutor", "Unit", "UnitFailed", "UnitStatus",
    "format_duration", "render_view", "unit_id", "visible_gpus",
]  # fmt: skip


def __getattr__(name: str):
    # submitit is an optional extra: import it only when the Slurm executor is asked for.
    if name == "SlurmExecutor":
        from hubkit.scaleout.slurm import SlurmExecutor

        return SlurmExecutor
    if name == "HfJobsExecutor":
        from hubkit.scaleout.hfjobs import HfJobsExecutor

        return HfJobsExecutor
    raise AttributeError(f"module 'hubkit.scaleout' has no attribute {name!r}")
