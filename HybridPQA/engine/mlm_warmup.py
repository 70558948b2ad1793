"""Masked-LM warm-up of the sparse head before contrastive training (MODEL.MLM_WARMUP).

A backbone trained without an MLM head (a sentence encoder such as all-MiniLM-L6-v2) gets a new one
(modeling.build), whose transform starts untrained, so its SPLADE vectors start as noise. A few
hundred steps of masked-LM training on the training data's own texts (15 % of word pieces masked,
as BERT) teach the head, or the whole model, to predict words from hidden states first; contrastive
training then starts from term weights that mean something.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import torch
from transformers import DataCollatorForLanguageModeling

from HybridPQA.modeling import BiEncoder
from HybridPQA.precision import autocast

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MlmWarmup:
    steps: int = 0
    train: str = "head"  # "head": the MLM head only | "all": the whole masked LM
    batch_size: int = 32
    lr: float = 1e-4
    max_length: int = 128


def build_mlm_warmup(cfg) -> MlmWarmup:
    w = cfg.RETRIEVER.MODEL.MLM_WARMUP
    return MlmWarmup(int(w.STEPS), w.TRAIN, int(w.BATCH_SIZE), float(w.LR), int(w.MAX_LENGTH))


def warm_up_mlm(model: BiEncoder, tokenizer, texts: list[str], settings: MlmWarmup, device: torch.device,
                dtype: torch.dtype | None, seed: int = 0) -> dict[str, float]:
    """Train each distinct masked LM under a sparse head on `texts`; {"first_loss", "last_loss"} (the
    mean of the first and last tenth of the steps) of the last one trained."""
    encoders = [e for e in (model.query_encoder, model.context_encoder)
                if e is not None and getattr(e, "sparse_head", None) is not None and hasattr(e, "mlm")]
    mlms = list({id(e.mlm): e.mlm for e in encoders}.values())
    if not settings.steps or not mlms or not texts:
        return {}
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    rng, report = random.Random(seed), {}
    for mlm in mlms:
        prefix = mlm.base_model_prefix
        frozen = [p for n, p in mlm.named_parameters() if settings.train == "head" and n.startswith(prefix)
                  and p.requires_grad]  # the backbone, and the word embeddings the decoder is tied to
        for p in frozen:  # no gradient through the backbone when only the head learns
            p.requires_grad_(False)
        optimizer = torch.optim.AdamW([p for p in mlm.parameters() if p.requires_grad], lr=settings.lr)
        mlm.train()
        started, losses = time.perf_counter(), []
        for _ in range(settings.steps):
            batch = [rng.choice(texts) for _ in range(settings.batch_size)]
            ids = tokenizer(batch, truncation=True, max_length=settings.max_length)["input_ids"]
            masked = collator([{"input_ids": x} for x in ids])
            with autocast(device, dtype):
                out = mlm(input_ids=masked["input_ids"].to(device), attention_mask=masked["attention_mask"].to(device),
                          labels=masked["labels"].to(device))
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(out.loss.detach())
        for p in frozen:
            p.requires_grad_(True)
        tenth = max(1, len(losses) // 10)
        report = {"first_loss": float(torch.stack(losses[:tenth]).mean()),
                  "last_loss": float(torch.stack(losses[-tenth:]).mean())}
        log.info("MLM warm-up (%s, %d steps of %d texts): loss %.3f -> %.3f in %.1f s", settings.train, settings.steps,
                 settings.batch_size, report["first_loss"], report["last_loss"], time.perf_counter() - started)
    return report
