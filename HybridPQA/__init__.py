"""HybridPQA: train and evaluate hybrid lexical + semantic dual encoders.

`from HybridPQA import HybridRetriever` is the Python API (HybridPQA.api); `hybridpqa --help`
lists the commands.
"""

__all__ = ["HybridRetriever", "SearchIndex"]


def __getattr__(name: str):
    if name in __all__:  # imported on first use, so `import HybridPQA.config` stays light
        from HybridPQA import api

        return getattr(api, name)
    raise AttributeError(f"module 'HybridPQA' has no attribute {name!r}")
