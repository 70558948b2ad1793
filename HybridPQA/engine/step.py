"""One micro-batch's loss: encode, score, named parts. Plain, or cached (GradCache) for large batches.

GradCache (Gao et al. 2021; sentence-transformers' CachedMultipleNegativesRankingLoss, Tevatron):
with SOLVER.GRAD_CACHE_CHUNK = m, the batch is encoded m questions (and their contexts) at a time
without gradients; the loss and its gradient with respect to every representation are taken over
the whole batch; then each chunk is encoded again, with the same dropout, and its representations
are back-propagated with those gradients. The gradients equal the uncached step's while activation
memory is that of m questions: in-batch negatives of a batch that would not fit. Under DDP the
cached vectors of every rank are gathered first, so the negatives are those of the global batch.
"""
from __future__ import annotations

import contextlib

import torch

from HybridPQA.heads import SPARSE
from HybridPQA.data.training import Batch
from HybridPQA.distributed import Distributed
from HybridPQA.losses import CrossLoss, HybridLoss
from HybridPQA.modeling import BiEncoder, CrossEncoder, tokenize
from HybridPQA.modeling.cross import tokenize_pairs
from HybridPQA.modeling.encoding import EncodingSettings


def reconstruction_targets(tokenizer, texts: list[str | None], slots: int, device: torch.device) -> torch.Tensor:
    """(N, slots) token ids of each context's pseudo-query (I3), -100 past its end and for None."""
    targets = torch.full((len(texts), slots), -100, dtype=torch.long)
    ids = tokenizer([t or "" for t in texts], add_special_tokens=False, truncation=True, max_length=slots)["input_ids"]
    for row, (text, tokens) in enumerate(zip(texts, ids)):
        if text:
            targets[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return targets.to(device)


def batch_loss(loss: HybridLoss, tokenizer, batch: Batch, q_reps: dict, c_reps: dict, device: torch.device,
               step: int, teacher: dict | None, epoch: int) -> tuple[dict, dict]:
    """(named parts, {side: sparse reps} for logging) of the whole batch's representations."""
    teacher_scores = batch.teacher_scores(teacher).to(device) if teacher is not None else None
    labels = batch.labels.to(device) if batch.labels is not None else None
    targets = None
    if "pseudo_query" in c_reps and batch.pseudo_queries is not None:
        targets = reconstruction_targets(tokenizer, batch.pseudo_queries, c_reps["pseudo_query"].shape[1], device)
    parts = loss(q_reps, c_reps, batch.positive.to(device), teacher_scores, step, labels, targets, epoch)
    return parts, ({"q": q_reps[SPARSE], "d": c_reps[SPARSE]} if SPARSE in q_reps else {})


def _encode(model, tokenizer, questions: list[str], contexts: list[str], encoding: EncodingSettings,
            device: torch.device) -> tuple[dict, dict]:
    return model(tokenize(tokenizer, questions, encoding.max_length("query"), device),
                 tokenize(tokenizer, contexts, encoding.max_length("context"), device))


def loss_parts(model: BiEncoder | CrossEncoder | torch.nn.Module, tokenizer, batch: Batch, loss: HybridLoss | CrossLoss,
               encoding: EncodingSettings, device: torch.device, step: int, teacher: dict | None,
               ranks: Distributed | None = None, epoch: int = 0) -> tuple[dict, dict]:
    """(named loss parts, {side: (N, V) sparse reps} for logging) of one micro-batch. `model` may be
    DDP-wrapped: each rank then encodes its share of the batch and gathers the rest (see distributed)."""
    per_q = len(batch.contexts) // len(batch.questions)
    mine = ranks.shard(len(batch.questions)) if ranks is not None else slice(0, len(batch.questions))
    questions, contexts = batch.questions[mine], batch.contexts[mine.start * per_q:mine.stop * per_q]
    gather = ranks.gather if ranks is not None else (lambda tensor: tensor)
    if isinstance(loss, CrossLoss):
        teacher_scores = batch.teacher_scores(teacher).to(device) if teacher is not None else None
        pairs = tokenize_pairs(tokenizer, [q for q in questions for _ in range(per_q)], contexts,
                               encoding.max_length("pair"), device)
        scores = gather(model(**pairs).view(len(questions), per_q))
        return loss(scores, batch.positive.to(device), teacher_scores, step), {}
    q_reps, c_reps = _encode(model, tokenizer, questions, contexts, encoding, device)
    q_reps, c_reps = {h: gather(r) for h, r in q_reps.items()}, {h: gather(r) for h, r in c_reps.items()}
    return batch_loss(loss, tokenizer, batch, q_reps, c_reps, device, step, teacher, epoch)


def _rng_state(device: torch.device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def cached_backward(model: torch.nn.Module, tokenizer, batch: Batch, loss: HybridLoss, encoding: EncodingSettings,
                    device: torch.device, step: int, teacher: dict | None, epoch: int, chunk: int,
                    scale=lambda total: total, ranks: Distributed | None = None) -> tuple[dict, dict]:
    """GradCache: back-propagate the batch's loss (times `scale`, e.g. 1 / accumulation and fp16's
    scaler) chunk by chunk; returns the detached parts and sparse reps, as `loss_parts` does.

    Under DDP (`ranks`) each rank caches its share of the batch, the shares are gathered so every
    rank takes the loss over the whole batch (every rank's contexts are negatives), and each rank
    back-propagates its own share's gradients, times the world size since DDP averages; DDP
    synchronises once, on the last chunk."""
    per_q = len(batch.contexts) // len(batch.questions)
    mine = ranks.shard(len(batch.questions)) if ranks is not None else slice(0, len(batch.questions))
    spans = [(a, min(a + chunk, mine.stop)) for a in range(mine.start, mine.stop, chunk)]
    gather = ranks.gather if ranks is not None else (lambda tensor: tensor)
    states, q_chunks, c_chunks = [], [], []
    with torch.no_grad():
        for a, b in spans:
            states.append(_rng_state(device))  # the dropout masks, replayed with gradients below
            q, c = _encode(model, tokenizer, batch.questions[a:b], batch.contexts[a * per_q:b * per_q], encoding, device)
            q_chunks.append(q)
            c_chunks.append(c)
        q_reps = {h: gather(torch.cat([q[h] for q in q_chunks])) for h in q_chunks[0]}
        c_reps = {h: gather(torch.cat([c[h] for c in c_chunks])) for h in c_chunks[0]}
    after = _rng_state(device)
    q_reps, c_reps = {h: r.requires_grad_() for h, r in q_reps.items()}, {h: r.requires_grad_() for h, r in c_reps.items()}
    parts, sparse = batch_loss(loss, tokenizer, batch, q_reps, c_reps, device, step, teacher, epoch)
    scale(sum(parts.values())).backward()  # gradients of the loss with respect to every representation
    world = ranks.world_size if ranks is not None else 1
    for n, ((a, b), state) in enumerate(zip(spans, states)):
        _set_rng_state(state, device)
        sync = model.no_sync() if ranks is not None and n < len(spans) - 1 else contextlib.nullcontext()
        with sync:
            q, c = _encode(model, tokenizer, batch.questions[a:b], batch.contexts[a * per_q:b * per_q], encoding, device)
            pieces = [(rep, q_reps[h].grad[a:b]) for h, rep in q.items() if q_reps[h].grad is not None]
            pieces += [(rep, c_reps[h].grad[a * per_q:b * per_q]) for h, rep in c.items() if c_reps[h].grad is not None]
            if pieces:
                (world * sum((rep * grad.to(rep.dtype)).sum() for rep, grad in pieces)).backward()
    _set_rng_state(after, device)
    return {k: v.detach() for k, v in parts.items()}, {k: v.detach() for k, v in sparse.items()}
