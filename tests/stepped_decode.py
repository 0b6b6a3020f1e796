"""Generated tokens decoded one at a time after a prompt, as the generation loop decodes them: shared by the
attention patches' tests (test_fattn_split.py, test_gqa_decode.py)."""
from __future__ import annotations

import numpy as np


def token_ids(n_vocab: int, n: int, seed: int) -> list[int]:
    """n random token ids (past the first three, the special ones), the same for the same seed."""
    return np.random.default_rng(seed).integers(3, n_vocab, size=n).tolist()


def stepped_logits(ctx, tokens: list[int], steps: int) -> np.ndarray:
    """Decode all but the last `steps` tokens in one batch from an empty cache, then those one by one: their logits."""
    n = len(tokens) - steps
    ctx.kv_clear()
    ctx.decode(tokens[:n], pos=0)
    out = []
    for step in range(steps):
        ctx.decode([tokens[n + step]], pos=n + step)
        out.append(ctx.logits().copy())
    return np.array(out)
