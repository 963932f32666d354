"""Hierarchical k-means IDs (DSI/NCI): cluster into k, recurse into every cluster with more than k members.

With ``levels`` fixed, a node at depth d holding S documents becomes

* an *internal* node when |S| > k: k-means into k clusters, level-d code = cluster, and every cluster
  with >= 2 members is recursed into at depth d+1 (at the last level it stays a collision group that
  the suffix separates);
* a *positional* node when |S| <= k (DSI's leaf): level-d code = the member's position 0..|S|-1 (doc
  order), and the remaining levels are padded with 0.

So IDs are variable-length underneath and padded to ``levels``: with k = 256 and a 5k corpus most
documents end after two levels and the third is all 0 (low utilisation there is expected). ``encode``
walks the same tree: nearest centroid at internal nodes, nearest member at positional nodes, so
re-encoding the fitted embeddings reproduces the fitted codes and a new document lands next to its
most similar neighbour (and collides with it; the suffix separates them).
"""
from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from genir.ids.base import CodecBase, compute_stats, kmeans, nearest


class HKMeansCodec(CodecBase):
    """Tree of k-means nodes stored flat: node rows node_offsets[i]..node_offsets[i+1] of ``vectors``."""

    scheme = "hkmeans"

    def fit(self, emb: np.ndarray, *, seed: int | None = None) -> "HKMeansCodec":
        """Fit on ``emb`` (n, d)."""
        t0 = time.perf_counter()
        emb = np.asarray(emb, dtype=np.float32)
        k, seed = self.cfg.codebook_size, self._seed(seed)
        vectors: list[np.ndarray] = []
        children: list[np.ndarray] = []
        # Breadth-first queue of (members, depth); node ids are queue positions, so the tree is seeded
        # and ordered deterministically.
        queue: list[tuple[np.ndarray, int]] = [(np.arange(len(emb)), 0)]
        for head in itertools.count():
            if head >= len(queue):
                break
            members, depth = queue[head]
            if len(members) <= k:
                vectors.append(emb[members])
                children.append(np.full(len(members), -1, dtype=np.int64))
                continue
            centroids = kmeans(emb[members], k, seed=seed + head, niter=self.cfg.kmeans_iters)
            assign = nearest(emb[members], centroids)
            child = np.full(k, -1, dtype=np.int64)
            if depth + 1 < self.levels:
                order = np.argsort(assign, kind="stable")
                bounds = np.searchsorted(assign[order], np.arange(k + 1))
                for c in range(k):
                    group = members[order[bounds[c] : bounds[c + 1]]]
                    if len(group) >= 2:
                        child[c] = len(queue)
                        queue.append((group, depth + 1))
            vectors.append(centroids)
            children.append(child)
        sizes = [len(v) for v in vectors]
        self.node_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.vectors = np.concatenate(vectors).astype(np.float32)
        self.child = np.concatenate(children)
        codes = self._walk(emb)
        self._stats = compute_stats(self.scheme, codes, self.codebook_sizes, fit_seconds=time.perf_counter() - t0)
        return self

    def encode(self, emb: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, levels) int64; levels below a positional node are 0."""
        self._check_fitted()
        return self._walk(np.asarray(emb, dtype=np.float32))

    def _walk(self, emb: np.ndarray) -> np.ndarray:
        codes = np.zeros((len(emb), self.levels), dtype=np.int64)
        node = np.zeros(len(emb), dtype=np.int64)  # current node per row, -1 once the ID has ended
        for level in range(self.levels):
            active = np.flatnonzero(node >= 0)
            if len(active) == 0:
                break
            order = active[np.argsort(node[active], kind="stable")]
            uniq, starts = np.unique(node[order], return_index=True)
            bounds = np.append(starts, len(order))
            next_node = np.full(len(emb), -1, dtype=np.int64)
            for i, nd in enumerate(uniq):
                rows = order[bounds[i] : bounds[i + 1]]
                lo, hi = self.node_offsets[nd], self.node_offsets[nd + 1]
                code = nearest(emb[rows], self.vectors[lo:hi])
                codes[rows, level] = code
                next_node[rows] = self.child[lo + code]
            node = next_node
        return codes

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"node_offsets": self.node_offsets, "vectors": self.vectors, "child": self.child}

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.node_offsets, self.vectors, self.child = arrays["node_offsets"], arrays["vectors"], arrays["child"]
