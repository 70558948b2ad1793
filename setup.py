from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name: str) -> list[str]:
    lines = (Path(__file__).parent / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


setup(
    name="HybridPQA",
    version="0.1.0",
    description="Hybrid lexical + semantic dual encoders (SPLADE + dense) for retrieval research",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["HybridPQA", "HybridPQA.*"]),
    package_data={"HybridPQA": ["resources/*.txt"]},
    python_requires=">=3.10",
    install_requires=read_requirements("base.txt"),
    extras_require={"test": ["pytest>=8"],
                    "export": ["sentence-transformers>=5.0"],  # hybridpqa export --format=sentence-transformers
                    "onnx": ["onnx>=1.16", "onnxruntime>=1.18"],  # hybridpqa export --format=onnx, OnnxEncoder
                    "databases": ["qdrant-client>=1.14", "qdrant-edge-py>=0.9", "pymilvus>=2.5", "milvus-lite>=2.5"],  # INDEX.STORE
                    "serve": ["fastapi>=0.110", "uvicorn>=0.29"],  # hybridpqa serve
                    "tracking": ["tensorboard>=2.14", "wandb>=0.17"],  # LOG.BACKENDS
                    "datasets": ["datasets>=2.19"]},  # training pairs from a saved Hugging Face dataset
    entry_points={"console_scripts": ["hybridpqa=HybridPQA.commands:entry_point"]},
)
