"""The cross-encoder reranker: BERT sequence classification over `[CLS] question [SEP] context [SEP]`."""
from __future__ import annotations

import torch
from torch import nn


class CrossEncoder(nn.Module):
    """input_ids, attention_mask, token_type_ids (B, L) of (question, context) pairs -> (B,) logits.

    One output unit: the score is trained listwise against the question's other contexts,
    so no second class is needed (the original used two classes, pointwise).
    """

    heads = ("cross",)

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    @property
    def backbone_config(self):
        return self.classifier.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        out = self.classifier(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.logits.squeeze(-1)


def tokenize_pairs(tokenizer, questions: list[str], contexts: list[str], max_length: int,
                   device: torch.device | str = "cpu") -> dict:
    """Pairs padded to the longest, contexts truncated first (questions are short)."""
    batch = tokenizer(questions, contexts, padding=True, truncation="longest_first", max_length=max_length,
                      return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}
