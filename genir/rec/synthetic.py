"""Seeded synthetic interaction data with a planted sequential pattern (tests, demos, smoke runs).

Items form ``num_items // chain`` chains; a user walks one chain step by step (item after item) with
probability ``follow`` and jumps to a uniformly random item otherwise. The next item is therefore
predictable from the last one, which a sequential model should learn and a popularity ranking cannot.
Item text names the chain ("group 3"), so text embeddings place chain members together.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from genir.data.types import Sequences


def planted_sequences(*, num_users: int = 400, num_items: int = 60, chain: int = 6, min_len: int = 6,
                      max_len: int = 10, follow: float = 0.9, seed: int = 0) -> Sequences:
    """Sequences with user ids ``u0..`` and item ids ``i0..``; item ``i`` is followed by ``i + 1`` within its chain."""
    if num_items % chain:
        raise ValueError(f"num_items ({num_items}) must be a multiple of chain ({chain})")
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_users):
        n = int(rng.integers(min_len, max_len + 1))
        cur = int(rng.integers(num_items))
        seq = [cur]
        for _ in range(n - 1):
            if rng.random() < follow:
                cur = cur - cur % chain + (cur % chain + 1) % chain
            else:
                cur = int(rng.integers(num_items))
            seq.append(cur)
        rows.append([f"i{x}" for x in seq])
    table = pa.table({"user_id": [f"u{u}" for u in range(num_users)], "items": rows})
    items = pa.table({"item_id": [f"i{x}" for x in range(num_items)],
                      "text": [f"group {x // chain} item {x % chain}" for x in range(num_items)]})
    return Sequences(table, items)
