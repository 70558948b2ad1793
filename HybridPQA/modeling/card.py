"""The model card (`README.md`) of a checkpoint: what it is, how to load it, how it was trained,
and what it measured, from the run's facts (`CardFacts`, built once from the config) and the
`results/<split>.json` of its run."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.files import write_atomic

TAGS = {"hybrid": [SPARSE, DENSE, "splade", "hybrid-retrieval"], SPARSE: [SPARSE, "splade"],
        DENSE: [DENSE], "cross": ["cross-encoder", "reranker"]}


def _table(results: dict[str, dict]) -> list[str]:
    lines = []
    for split, res in results.items():
        metrics = res.get("metrics") or {}
        names = sorted({m for scores in metrics.values() for m in scores})[:8]
        if not names:
            continue
        lines += [f"**{split}** ({res.get('dataset')}, {res.get('queries_scored')} queries, {res.get('mode')})", "",
                  "| scorer | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {scorer} | " + " | ".join(f"{scores.get(n, float('nan')):.4f}" for n in names) + " |"
                  for scorer, scores in metrics.items()]
        cost = {s: e for s, e in (res.get("efficiency") or {}).items() if isinstance(e, dict) and "latency_ms_p50" in e}
        if cost:
            lines += ["", "| scorer | GFLOPs/query | latency ms (p50, one query) |", "|---|---|---|"]
            lines += [f"| {s} | {e.get('gflops_per_query') or 0:.4f} | {e['latency_ms_p50']:.1f} |" for s, e in cost.items()]
        lines.append("")
    return lines


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


def write_card(path: Path, facts: CardFacts, config_text: str, manifest: dict,
               results: dict[str, dict] | None = None) -> None:
    f = facts
    kind, base = f.kind, f.base
    front = ["---", "library_name: hybridpqa", "pipeline_tag: feature-extraction", "tags:"]
    front += [f"- {t}" for t in TAGS.get(kind, [kind])]
    if not Path(base).exists() and "/" in base:  # a hub name, not a local folder
        front.append(f"base_model: {base}")
    front.append("---")
    encoders = ", ".join(f"`{f}/`" for f in manifest["folders"])
    body = [
        f"# {f.name}", "",
        f"A {kind} retriever trained with [HybridPQA](https://github.com/biplob1ly/HybridPQA) from `{base}`: "
        + ("one masked-LM backbone per side gives a dense vector (CLS pooling) and a SPLADE bag of words, fused at "
           "search time." if kind == "hybrid" else f"the {kind} head of a masked-LM backbone."), "",
        "## Use it", "", "```python", "from HybridPQA import HybridRetriever", "",
        'retriever = HybridRetriever.from_pretrained("PATH")', 'index = retriever.index({"d1": "a document", "d2": "another"})',
        'print(index.search(["a question"], k=2))', "```", "",
        f"The encoders ({encoders}) are plain `transformers` folders: "
        '`AutoModelForMaskedLM.from_pretrained("PATH/query")`. `hybridpqa export --format=sentence-transformers` '
        "writes sentence-transformers folders.", "",
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
    body += ["## Config", "", "```yaml", config_text.rstrip(), "```", ""]
    write_atomic(Path(path) / "README.md", "\n".join(front + [""] + body))
