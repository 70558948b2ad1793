"""The paper README's entry point: `python HybridPQA/retriever_trainer.py --path_cfg_exp=... ...`.

Takes the same flags as `hybridpqa train` and does the same thing.
"""
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
    from HybridPQA.cli import main

    main(["train", *sys.argv[1:]])
