"""SPLADE-max's pooled vocabulary projection, max over tokens of (hidden @ W.T + b), without
materialising the (B, L, V) logits, and its sparse backward pass. Used by `heads.SpladeHead`."""
from __future__ import annotations

import torch

TILE_TOKENS = 512


def max_projection(hidden, weight, bias, pad, chunk: int, with_argmax: bool = False):
    """max over real tokens of (hidden @ weight.T + bias): (B, L, H), (V, H), (V,), (B, L) pad -> (B, V),
    and with `with_argmax` the (B, V) winning token of each. Runs in autocast's dtype.

    The projection runs in tiles of ~TILE_TOKENS tokens (whole texts) x `chunk` terms, so the
    (B, L, V) logits never exist at once and each tile stays in cache (about 1.3x faster than
    vocabulary chunks alone on the project's CPU). A tile is cut after its texts' last real token,
    so trailing padding (most of a short query padded to 128) is never projected; padding left
    inside a tile takes a copy of its text's first real token, whose logits can tie the max but,
    coming later, never win it (max returns the first maximal index). Without the argmax the max
    is an amax, about 2x faster again; inference takes that path.
    """
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    h, w = hidden.to(dtype), weight.to(dtype)
    values = torch.empty(hidden.shape[0], weight.shape[0], dtype=dtype, device=hidden.device)
    index = torch.empty(values.shape, dtype=torch.long, device=hidden.device) if with_argmax else None
    positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device)
    ends = (positions * ~pad).amax(1).clamp(min=1).tolist()  # one past each text's last real token
    first = (~pad).float().argmax(1)  # each text's first real token
    h = torch.where(pad.unsqueeze(-1), h[torch.arange(h.shape[0], device=h.device), first].unsqueeze(1), h)
    with torch.autocast(device, enabled=False):
        for r, n, end in _tiles(ends):
            rows = slice(r, r + n)
            tokens = h[rows, :end].reshape(n * end, -1)  # one contiguous (tokens, H) block: plain 2-D matmuls
            for start in range(0, weight.shape[0], chunk):
                # calflops counts torch.matmul
                logits = torch.matmul(tokens, w[start:start + chunk].T).view(n, end, -1)
                tile = (rows, slice(start, start + chunk))
                if with_argmax:
                    torch.max(logits, dim=1, out=(values[tile], index[tile]))
                else:
                    torch.amax(logits, dim=1, out=values[tile])
        values = values + bias.to(dtype)  # a per-term constant: max(x + b) = max(x) + b
    return values, index


def _tiles(ends: list[int]) -> list[tuple[int, int, int]]:
    """(first text, texts, tokens) per tile: consecutive texts while texts x longest <= TILE_TOKENS."""
    tiles, r = [], 0
    while r < len(ends):
        n, end = 1, ends[r]
        while r + n < len(ends) and (n + 1) * max(end, ends[r + n]) <= TILE_TOKENS:
            end = max(end, ends[r + n])
            n += 1
        tiles.append((r, n, end))
        r += n
    return tiles


class MaxPooledProjection(torch.autograd.Function):
    """`max_projection` with a sparse backward pass: only the argmax token of each (text, term)
    is saved, and a gradient reaches a token only through the terms it won and that have a
    non-zero gradient (active after ReLU, inside the vocabulary mask and the top-k), which are a
    few hundred per text. The forward pass takes the max alone (an amax, ~2x faster than max with
    indices); the backward pass finds the winning token of just those few hundred (text, term)
    pairs again, one small matmul per text, in the forward's precision.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, pad, chunk: int):
        device = hidden.device.type
        ctx.dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        values, _ = max_projection(hidden, weight, bias, pad, chunk)
        ctx.save_for_backward(hidden, weight, pad)
        return values

    @staticmethod
    def backward(ctx, grad):
        hidden, weight, pad = ctx.saved_tensors
        batch, length, size = hidden.shape
        rows, terms = grad.nonzero(as_tuple=True)  # row-major: each text's terms are contiguous
        g = grad[rows, terms].float().unsqueeze(1)
        tokens = rows * length + _winners(hidden, weight, pad, rows, terms, ctx.dtype)  # flat (B*L) positions
        flat = hidden.reshape(-1, size)
        grad_hidden = torch.zeros(batch * length, size, device=hidden.device).index_add_(0, tokens, g * weight[terms].float())
        grad_weight = torch.zeros(weight.shape, device=weight.device).index_add_(0, terms, g * flat[tokens].float())
        grad_bias = torch.zeros(weight.shape[0], device=weight.device).index_add_(0, terms, g.squeeze(1))
        return grad_hidden.view_as(hidden).to(hidden.dtype), grad_weight.to(weight.dtype), grad_bias, None, None


def _winners(hidden, weight, pad, rows, terms, dtype) -> torch.Tensor:
    """The token (position) of each text `rows[i]` whose logit for term `terms[i]` is the max."""
    index = torch.empty_like(rows)
    counts = torch.bincount(rows, minlength=hidden.shape[0]).tolist()
    start = 0
    for row, count in enumerate(counts):
        if count:
            chosen = slice(start, start + count)
            logits = hidden[row].to(dtype) @ weight[terms[chosen]].to(dtype).T  # (L, count)
            index[chosen] = logits.masked_fill(pad[row].unsqueeze(-1), float("-inf")).argmax(0)
            start += count
    return index
