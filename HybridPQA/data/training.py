"""Training batches: each question with P positives and C - P negatives, sampled per epoch.

Sampling is a pure function of (seed, epoch, position), so a resumed run sees exactly the
batches an uninterrupted one would, and the data position is just (epoch, batch index).
Missing hard negatives are filled with random contexts of other questions, never with one
of the question's own positives (by id or by identical text).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from HybridPQA.data.readers import RankingData
from HybridPQA.errors import InputError


@dataclass
class Batch:
    """Q questions, each followed by its C contexts; `positive` (Q, Q*C) marks every context
    that is a positive of a question, the first of its own C being the loss target."""

    questions: list[str]
    contexts: list[str]
    positive: torch.Tensor
    qids: list[str]
    docids: list[str]
    labels: torch.Tensor | None = None  # (Q, C) graded label of each question's own contexts, 0 = sampled negative
    pseudo_queries: list[str | None] | None = None  # per context: its reconstruction target (I3), None = none

    def teacher_scores(self, run: dict[str, dict[str, float]]) -> torch.Tensor:
        """(Q, C) scores of each question's own contexts in a teacher run, NaN where it has none."""
        per_q = len(self.docids) // len(self.qids)
        return torch.tensor([[run.get(q, {}).get(d, float("nan")) for d in self.docids[i * per_q:(i + 1) * per_q]]
                             for i, q in enumerate(self.qids)], dtype=torch.float32)


def pseudo_queries(data: RankingData, kind: str) -> dict[str, str] | None:
    """{docid: reconstruction target} for I3 (MODEL.I3.TARGETS): "questions" joins the training
    questions whose positive the context is, "title" takes its first sentence, "questions-or-title"
    the questions where there are any, else the first sentence; None for "none".
    A context missing here has no target and gets no reconstruction loss."""
    if kind == "none":
        return None
    titles = {d: re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0] for d, text in data.docs.items() if text.strip()}
    if kind == "title":
        return titles
    asked: dict[str, list[str]] = {}
    for qid in data.judged_qids():
        for docid in data.positives(qid):
            asked.setdefault(docid, []).append(data.queries[qid])
    questions = {d: " ; ".join(texts) for d, texts in asked.items()}
    return {**titles, **questions} if kind == "questions-or-title" else questions


class TrainingSet:
    def __init__(self, data: RankingData, batch_size: int, num_positives: int, num_total: int, seed: int,
                 pseudo_queries: dict[str, str] | None = None):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.pseudo_queries = pseudo_queries  # docid -> I3 reconstruction target (data.pseudo_queries)
        self.num_positives, self.num_total = num_positives, num_total
        self.qids = data.judged_qids()
        if len(self.qids) < batch_size:
            raise InputError(f"training split {data.name}: {len(self.qids)} questions with a positive, fewer "
                             f"than RETRIEVER.SOLVER.TRAIN_BATCH_SIZE = {batch_size}; lower it or add data")
        self.pool = sorted(data.docs)  # random negatives come from here
        if len(self.pool) < 2 * num_total:
            raise InputError(f"training split {data.name}: {len(self.pool)} contexts are too few to sample "
                             f"RETRIEVER.DATA.NUM_TOTAL_CONTEXTS = {num_total} per question; lower it or add data")
        self.negatives = {q: data.hard_negatives.get(q) or [d for d in (data.candidates or {}).get(q, [])
                                                            if d not in data.qrels[q] or data.qrels[q][d] <= 0]
                          for q in self.qids}

    def batches_per_epoch(self) -> int:
        return len(self.qids) // self.batch_size  # drop_last: every batch has the same size

    def _contexts(self, qid: str, rng: np.random.Generator) -> list[str]:
        pos = self.data.positives(qid)
        take = rng.choice(len(pos), self.num_positives, replace=len(pos) < self.num_positives)
        chosen = [pos[i] for i in take]
        negs = self.negatives[qid]
        want = self.num_total - len(chosen)
        chosen += [negs[i] for i in rng.permutation(len(negs))[:want]]
        forbidden = set(pos) | {self.data.docs[d] for d in pos}
        while len(chosen) < self.num_total:
            doc = self.pool[rng.integers(len(self.pool))]
            if doc not in forbidden and self.data.docs[doc] not in forbidden and doc not in chosen:
                chosen.append(doc)
        return chosen

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch `index` of `epoch`, identical however many times it is asked for."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.qids))
        qids = [self.qids[i] for i in order[index * self.batch_size:(index + 1) * self.batch_size]]
        docids = [d for pos, q in enumerate(qids)
                  for d in self._contexts(q, np.random.default_rng([self.seed, epoch, index, pos]))]
        texts = [self.data.docs[d] for d in docids]
        positive = torch.zeros(len(qids), len(docids), dtype=torch.bool)
        for i, qid in enumerate(qids):
            pos_ids = set(self.data.positives(qid))
            pos_texts = {self.data.docs[d] for d in pos_ids}
            for j, (doc, text) in enumerate(zip(docids, texts)):
                positive[i, j] = doc in pos_ids or text in pos_texts
        per_q = self.num_total
        labels = torch.tensor([[float(max(0, self.data.qrels[q].get(d, 0))) for d in docids[i * per_q:(i + 1) * per_q]]
                               for i, q in enumerate(qids)])
        pseudo = [self.pseudo_queries.get(d) for d in docids] if self.pseudo_queries is not None else None
        return Batch([self.data.queries[q] for q in qids], texts, positive, qids, docids, labels, pseudo)
