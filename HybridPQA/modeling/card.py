"""The model card (`README.md`) of a checkpoint, as the Hugging Face hub reads it: metadata from
`huggingface_hub.ModelCardData` (base_model, license, datasets, pipeline_tag, library_name, and a
model-index of the test metrics), then what it is, a snippet that loads this very folder, how it
was trained and what it measured, from the run's facts (`CardFacts`, built once from the config)
and the `results/<split>.json` of its run. `check_card` is the offline equivalent of
`ModelCard.validate`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic
from HybridPQA.heads import DENSE, HYBRID, SPARSE

LIBRARY = "hybridpqa"  # the card's snippet loads the folder with this package (`pip install HybridPQA`)
TAGS = {HYBRID: [SPARSE, DENSE, "splade", "hybrid-retrieval"], SPARSE: [SPARSE, "splade"],
        DENSE: [DENSE], "cross": ["cross-encoder", "reranker"]}
# the public hub id and licence of the base models the set-up provides as local folders
KNOWN_BASES = {"splade-tiny": ("rasyosef/splade-tiny", "apache-2.0"),
               "all-MiniLM-L6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")}
KNOWN_DATASETS = {"scifact": "BeIR/scifact", "trec-dl19-subset": "BeIR/msmarco", "cranfield": "BeIR/cranfield"}
CARD_METRICS = ("ndcg@10", "mrr@10", "mrr@5", "recall@100", "map")  # the ones put in the model-index
REQUIRED = ("library_name", "pipeline_tag", "tags")


@dataclass(frozen=True)
class CardFacts:
    """How a checkpoint was trained, as its card tells it."""
    name: str
    kind: str  # BIENCODER_TYPE
    base: str  # PRETRAINED_MODEL_TYPE
    data: str
    train_path: str | None
    val_path: str | None
    val_from_train: float
    steps: int
    batch_size: int
    contexts: int
    lr: float
    temperature: float
    similarity: str
    lambda_query: float
    lambda_context: float


def _base(base: str) -> tuple[str | None, str | None]:
    """(hub id, licence) of the base model: a hub name as given, a known local folder by its public id."""
    if Path(base).expanduser().exists():
        return KNOWN_BASES.get(Path(base).name, (None, None))
    return (base if "/" in base else None), None


def _eval_results(results: dict[str, dict], facts: CardFacts) -> list:
    from huggingface_hub import EvalResult

    out = []
    for split, res in results.items():
        dataset = res.get("dataset") or facts.data
        for scorer, scores in (res.get("metrics") or {}).items():
            out += [EvalResult(task_type="information-retrieval", dataset_type=KNOWN_DATASETS.get(dataset, dataset),
                               dataset_name=dataset, dataset_split=split, metric_type=m.replace("@", "_at_"),
                               metric_value=round(float(scores[m]), 4), metric_name=f"{m} ({scorer})")
                    for m in CARD_METRICS if m in scores]
    return out


def _table(results: dict[str, dict]) -> list[str]:
    lines = []
    for split, res in results.items():
        metrics = res.get("metrics") or {}
        names = sorted({m for scores in metrics.values() for m in scores})[:8]
        if not names:
            continue
        lines += [f"**{split}** ({res.get('dataset')}, {res.get('queries_scored')} queries, {res.get('mode')})", "",
                  "| scorer | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {scorer}{' (default)' if scorer == res.get('default_scorer') else ''} | "
                  + " | ".join(f"{scores.get(n, float('nan')):.4f}" for n in names) + " |"
                  for scorer, scores in metrics.items()]
        cost = {s: e for s, e in (res.get("efficiency") or {}).items() if isinstance(e, dict) and "gflops_per_query" in e}
        if cost:  # latency depends on the machine and its load, which a card cannot carry: left out
            lines += ["", "| scorer | GFLOPs per query |", "|---|---|"]
            lines += [f"| {s} | {e.get('gflops_per_query') or 0:.4f} |" for s, e in cost.items()]
        lines.append("")
    return lines


def write_card(path: Path, facts: CardFacts, config_text: str, manifest: dict,
               results: dict[str, dict] | None = None, home: Path | None = None) -> None:
    """README.md into `path`, for a checkpoint that will live at `home` (default: `path`)."""
    from huggingface_hub import ModelCardData

    f = facts
    hub_id, licence = _base(f.base)
    dataset = KNOWN_DATASETS.get(f.data)
    data = ModelCardData(library_name=LIBRARY, pipeline_tag="text-ranking" if f.kind == "cross" else "feature-extraction",
                         tags=TAGS.get(f.kind, [f.kind]), base_model=hub_id, license=licence,
                         datasets=[dataset] if dataset else None, model_name=f.name if results else None,
                         eval_results=_eval_results(results, f) or None if results else None)
    folder = Path(home or path).resolve()
    encoders = ", ".join(f"`{name}/`" for name in manifest["folders"])
    body = [
        f"# {f.name}", "",
        f"A {f.kind} retriever trained with HybridPQA (the `HybridPQA` Python package) from `{f.base}`: "
        + ("one masked-LM backbone per side gives a dense vector and a SPLADE bag of words, fused at search time."
           if f.kind == HYBRID else f"the {f.kind} head of a masked-LM backbone."), "",
        "## Use it", "", "```python", "from HybridPQA import HybridRetriever, SearchIndex", "",
        f"retriever = HybridRetriever.from_pretrained({str(folder)!r})  # this folder, wherever it is",
        'index = SearchIndex.build(retriever, {"d1": "a usb-c charging cable", "d2": "a wool sweater"})',
        'print(index.search("does it charge over usb?", k=2))', "```", "",
        f"The encoders ({encoders}) are plain `transformers` folders (`AutoModelForMaskedLM.from_pretrained`); "
        "`hybridpqa export --format=sentence-transformers` writes sentence-transformers folders (one per head, "
        "queries and documents routed).", "",
        "## Encoding and fusion", "", "```json", json.dumps({"encoding": manifest["encoding"],
                                                             "fusion": manifest["fusion"]}, indent=2), "```", "",
        "## Training", "",
        f"- data: {f.data} (`{f.train_path}`, val: "
        + (f"{f.val_from_train:.0%} of the training questions)" if f.val_from_train else f"`{f.val_path}`)"),
        f"- {f.steps} steps of {f.batch_size} questions x {f.contexts} contexts, "
        f"lr {f.lr}, temperature {f.temperature}, similarity {f.similarity}",
        f"- FLOPS regulariser: lambda query {f.lambda_query}, context {f.lambda_context}", "",
    ]
    if results:
        body += ["## Results", "", *_table(results)]
    body += ["## Config", "", "```yaml", config_text.rstrip(), "```", "",
             "## Citation", "", "The method: Biswas & Ramnath (2024), *Efficient and Interpretable Information Retrieval "
             "for Product Question Answering with Heterogeneous Data*.", ""]
    write_atomic(Path(path) / "README.md", f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def check_card(path: Path):
    """The card of `path` as the hub reads it (huggingface_hub.ModelCard), with the metadata the hub
    needs; a one-line error otherwise. Where the hub can be reached, ModelCard.validate checks it there too."""
    from huggingface_hub import ModelCard

    file = Path(path) / "README.md"
    try:
        card = ModelCard.load(file)
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad card
        raise InputError(f"{file}: not a valid model card ({err.__class__.__name__}: {err})") from None
    missing = [k for k in REQUIRED if not getattr(card.data, k, None)]
    if missing:
        raise InputError(f"{file}: model card metadata lacks {', '.join(missing)}")
    return card
