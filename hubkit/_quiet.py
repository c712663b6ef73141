"""Keep library chatter (deprecation notices, optional-kernel probes, load bars) off the user's terminal
when hubkit calls transformers/peft in-process; hubkit prints its own progress."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_ml_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("bitsandbytes", "transformers", "peft", "accelerate", "datasets", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(peft|transformers)\..*")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
