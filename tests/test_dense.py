"""DenseIndex search parameters reach the index through faiss wrappers (pre-transforms, IDMap)."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from genir.config import DenseConfig
from genir.dense import DenseIndex, apply_search_params

D, N, NLIST = 64, 2000, 16


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D)).astype(np.float32)
    q = (x[:50] + 0.5 * rng.standard_normal((50, D))).astype(np.float32)
    return x, q


def _inner(index: faiss.Index, kind: str) -> faiss.Index:
    """The IVF or HNSW index under pre-transforms and IDMap wrappers."""
    index = faiss.downcast_index(index)
    while not hasattr(index, kind) and hasattr(index, "index"):
        index = faiss.downcast_index(index.index)
    return index


def _read_back(dense: DenseIndex) -> dict[str, int]:
    ivf, hnsw = _inner(dense.index, "nprobe"), _inner(dense.index, "hnsw")
    out = {}
    if hasattr(ivf, "nprobe"):
        out["nprobe"] = int(ivf.nprobe)
    if hasattr(hnsw, "hnsw"):
        out["efSearch"] = int(hnsw.hnsw.efSearch)
    return out


def _idmap(x: np.ndarray, factory: str) -> faiss.Index:
    index = faiss.IndexIDMap(faiss.index_factory(D, factory, faiss.METRIC_INNER_PRODUCT))
    index.train(x)
    index.add_with_ids(x, np.arange(len(x)))
    return index


@pytest.mark.parametrize("factory, expected", [
    ("PCA32,IVF16,Flat", {"nprobe": 7}),
    ("IVF16,Flat", {"nprobe": 7}),
    ("PCA32,HNSW16", {"efSearch": 99}),
    ("HNSW16", {"efSearch": 99}),
    ("Flat", {}),
])
def test_search_parameters_reach_wrapped_factories(data, factory, expected):
    cfg = DenseConfig(factory=factory, nprobe=7, hnsw_ef_search=99, use_gpu=False)
    dense = DenseIndex.build(data[0], cfg)
    assert _read_back(dense) == expected == dense.search_params


@pytest.mark.parametrize("factory, expected", [("PCA32,IVF16,Flat", {"nprobe": 7}), ("PCA32,HNSW16", {"efSearch": 99})])
def test_search_parameters_reach_through_idmap(data, factory, expected, tmp_path):
    cfg = DenseConfig(factory=factory, nprobe=7, hnsw_ef_search=99, use_gpu=False)
    dense = DenseIndex(_idmap(data[0], factory), cfg)
    assert _read_back(dense) == expected
    dense.save(tmp_path / "idmap.faiss")  # a saved index gets them again on load
    assert _read_back(DenseIndex.load(tmp_path / "idmap.faiss", cfg)) == expected


def test_nprobe_changes_results_on_a_pca_wrapped_ivf(data):
    x, q = data
    exact = DenseIndex.build(x, DenseConfig(factory="Flat", use_gpu=False)).search(q, 10)[1]
    found = {}
    for nprobe in (1, NLIST):
        dense = DenseIndex.build(x, DenseConfig(factory="PCA32,IVF16,Flat", nprobe=nprobe, use_gpu=False))
        found[nprobe] = dense.search(q, 10)[1]
    assert not np.array_equal(found[1], found[NLIST])

    def recall(idx: np.ndarray) -> float:
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx.tolist(), exact.tolist())])

    assert recall(found[NLIST]) > recall(found[1])  # every list probed: only PCA's loss remains


def test_parameters_no_part_of_the_index_has_are_skipped():
    assert apply_search_params(faiss.IndexFlatIP(4), {"nprobe": 3, "efSearch": 5}) == {}
