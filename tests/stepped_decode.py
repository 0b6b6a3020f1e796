"""Generated tokens decoded one at a time after a prompt, as the generation loop decodes them: shared by the
attention patches' tests (test_fattn_split.py, test_gqa_decode.py)."""
from __future__ import annotations

import numpy as np


def token_ids(n_vocab: int, n: int, seed: int) -> list[int]:
    """n random token ids (past the first three, the special ones), the same for the same seed."""
    return np.random.default_rng(seed).integers(3, n_vocab, size=n).tolist()


def stepped_logits(ctx, tokens: list[int], steps: int, batch: int = 1) -> np.ndarray:
    """Decode all but the last `steps` tokens in one batch from an empty cache, then those `batch` at a time (1: one
    by one): their logits."""
    n = len(tokens) - steps
    ctx.kv_clear()
    ctx.decode(tokens[:n], pos=0)
    out = []
    for step in range(0, steps, batch):
        chunk = tokens[n + step:n + min(step + batch, steps)]
        ctx.decode(chunk, pos=n + step, all_logits=True)
        out += [ctx.logits(i).copy() for i in range(len(chunk))]
    return np.array(out)
