"""Export a saved sparse index for Lucene: Pyserini / Anserini impact search.

Documents go to `corpus/docs.jsonl` in Pyserini's JsonVectorCollection format, one
{"id", "contents", "vector": {term: impact}} per line, with integer impacts round(w * q)
(q = 100 by default; terms that round to 0 are dropped). Queries go to `queries.tsv` in
Anserini's pre-tokenised impact format, `qid<TAB>term term ...`, each term repeated by its
impact. Index and search with, for example:
  python -m pyserini.index.lucene --collection JsonVectorCollection --input corpus \
      --index lucene --generator DefaultLuceneDocumentGenerator --impact --pretokenized
  python -m pyserini.search.lucene --index lucene --topics queries.tsv --output run.trec \
      --impact --pretokenized --hits 100
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from HybridPQA.errors import InputError
from HybridPQA.files import check_output_dir
from HybridPQA.retrieval.index import SparseIndex, load_queries


def _impacts(row_indices: np.ndarray, row_weights: np.ndarray, terms: list[str], quantization: int) -> dict[str, int]:
    values = np.rint(row_weights * quantization).astype(np.int64)
    return {terms[t]: int(v) for t, v in zip(row_indices, values) if v > 0}


def export_pyserini(index_dir: Path, out_dir: Path, quantization: int = 100) -> dict[str, int]:
    """Write corpus/docs.jsonl and queries.tsv under out_dir; returns counts."""
    index = SparseIndex.load(Path(index_dir), mmap=False)
    if index.terms is None:
        raise InputError(f"{index_dir}: the index has no vocabulary (terms.json); rebuild it with this version")
    docs = index.by_term.tocsr()
    out_dir = check_output_dir(out_dir, "--output")
    (out_dir / "corpus").mkdir(parents=True, exist_ok=True)
    postings = 0
    with (out_dir / "corpus" / "docs.jsonl").open("w", encoding="utf-8") as handle:
        for i, docid in enumerate(index.docids):
            cols = slice(docs.indptr[i], docs.indptr[i + 1])
            vector = _impacts(docs.indices[cols], docs.data[cols], index.terms, quantization)
            postings += len(vector)
            handle.write(json.dumps({"id": docid, "contents": "", "vector": vector}) + "\n")
    counts = {"documents": len(index.docids), "postings": postings, "quantization": quantization}
    queries = load_queries(Path(index_dir))
    if queries is not None:
        qids, matrix = queries
        with (out_dir / "queries.tsv").open("w", encoding="utf-8") as handle:
            for i, qid in enumerate(qids):
                cols = slice(matrix.indptr[i], matrix.indptr[i + 1])
                vector = _impacts(matrix.indices[cols], matrix.data[cols], index.terms, quantization)
                handle.write(qid + "\t" + " ".join(" ".join([t] * n) for t, n in vector.items()) + "\n")
        counts["queries"] = len(qids)
    return counts
