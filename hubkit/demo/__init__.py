"""The offline demo world and the `hubkit demo` pipeline."""
