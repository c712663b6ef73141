"""hubkit: take a LoRA adapter from "it trained" to "it is published, reproducible and try-able"."""

__version__ = "0.1.0"
