"""`python -m HybridPQA.cli` and the `hybridpqa` console script: the commands layer's entry point."""
from HybridPQA.commands import entry_point, main

__all__ = ["entry_point", "main"]

if __name__ == "__main__":
    entry_point()
