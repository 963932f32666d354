"""Semantic-ID codecs and the collision suffix, on a seeded Gaussian mixture."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genir.config import CodecConfig
from genir.ids import SCHEMES, CodecStats, SemanticIdCodec, add_suffix, collision_groups, load_codec, make_codec

# Small network and few epochs keep the 20k-point fit to seconds; the utilisation bar stays the real one.
FAST_RQVAE = dict(hidden_dims=(128,), latent_dim=16, epochs=8, batch_size=1024)


def mixture(n: int, d: int, *, clusters: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d)) * 3
    return (centers[rng.integers(clusters, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    return mixture(20_000, 64)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return mixture(1_500, 16, clusters=12, seed=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # same thread count for every fit: CPU determinism holds per thread count
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rqvae_big(big):
    return make_codec(CodecConfig(scheme="rqvae", **FAST_RQVAE)).fit(big, seed=0)


def test_rqvae_uses_codes_and_ids_unique_after_suffix(rqvae_big, big):
    stats = rqvae_big.stats()
    assert stats.codebook_sizes == (256, 256, 256)
    assert min(stats.utilization) >= 0.95, stats.utilization
    codes = rqvae_big.encode(big)
    assert codes.shape == (len(big), 3) and codes.dtype == np.int64
    for level in range(3):  # the stat is what the codes show
        assert len(np.unique(codes[:, level])) / 256 == pytest.approx(stats.utilization[level])
    ids = add_suffix(codes)
    assert len(np.unique(ids, axis=0)) == len(big)
    assert stats.recon_mse is not None and stats.recon_rel < 1.0  # decoder beats predicting zero


def test_rqvae_same_seed_same_codes(rqvae_big, big):
    again = make_codec(CodecConfig(scheme="rqvae", **FAST_RQVAE)).fit(big, seed=0)
    np.testing.assert_array_equal(again.encode(big), rqvae_big.encode(big))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_save_load_identical_codes(scheme, small, tmp_path):
    cfg = CodecConfig(scheme=scheme, codebook_size=32, hidden_dims=(32,), latent_dim=8, epochs=3, batch_size=256)
    codec = make_codec(cfg).fit(small, seed=3)
    assert isinstance(codec, SemanticIdCodec)
    codec.save(tmp_path)
    back = load_codec(tmp_path)
    assert type(back) is type(codec) and back.levels == codec.levels and back.codebook_sizes == codec.codebook_sizes
    np.testing.assert_array_equal(back.encode(small), codec.encode(small))
    assert back.stats() == codec.stats()
    doc = json.loads((tmp_path / "codec.json").read_text())
    assert doc["scheme"] == scheme and doc["config"]["codebook_size"] == 32
    json.dumps(codec.stats().to_dict())  # JSON-ready


@pytest.mark.parametrize("scheme", ["rqkmeans", "hkmeans"])
def test_kmeans_schemes_seeded(scheme, small):
    cfg = CodecConfig(scheme=scheme, codebook_size=32)
    a = make_codec(cfg).fit(small, seed=5).encode(small)
    b = make_codec(cfg).fit(small, seed=5).encode(small)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(small), 3) and a.min() >= 0 and a.max() < 32


def test_rqkmeans_reconstruction_improves_with_levels(small):
    errs = [make_codec(CodecConfig(scheme="rqkmeans", levels=lv, codebook_size=32)).fit(small).stats().recon_mse
            for lv in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2]


def test_hkmeans_tree_shape(small):
    codec = make_codec(CodecConfig(scheme="hkmeans", codebook_size=32)).fit(small)
    codes = codec.encode(small)
    # 1,500 docs / 32 clusters: clusters above 32 members are split again, smaller ones number their members,
    # so every document ends unique or (only at the last level) in a k-means collision group.
    groups = collision_groups(codes)
    assert codec.stats().largest_collision == groups.max()
    assert codec.stats().utilization[0] == 1.0


def test_atomic_one_token_per_doc(small):
    codec = make_codec(CodecConfig(scheme="atomic")).fit(small)
    assert codec.levels == 1 and codec.codebook_sizes == (len(small),)
    np.testing.assert_array_equal(codec.encode(small)[:, 0], np.arange(len(small)))
    assert codec.stats().collision_share == 0.0 and codec.stats().largest_collision == 1


def test_stats_counts_collisions():
    from genir.ids.base import compute_stats

    codes = np.array([[0, 1], [0, 1], [0, 1], [1, 0], [2, 2]])
    s = compute_stats("x", codes, (4, 4), fit_seconds=0.0)
    assert s.collision_share == pytest.approx(3 / 5) and s.largest_collision == 3
    assert s.utilization == (0.75, 0.75)
    p = np.array([3, 1, 1]) / 5
    assert s.perplexity[0] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())))
    assert CodecStats.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_suffix_fresh_and_incremental():
    codes = np.array([[1, 2], [3, 4], [1, 2], [1, 2], [3, 4]])
    out = add_suffix(codes)
    np.testing.assert_array_equal(out[:, 2], [0, 0, 1, 2, 1])
    np.testing.assert_array_equal(out[:, :2], codes)
    # existing IDs: (1,2) used suffixes 0..2 (with a gap after a removal: 0 and 2 remain), (3,4) used 0..1.
    existing = np.array([[1, 2, 0], [1, 2, 2], [3, 4, 1], [3, 4, 0]])
    new = np.array([[1, 2], [5, 5], [3, 4], [1, 2]])
    out = add_suffix(new, existing=existing)
    np.testing.assert_array_equal(out[:, 2], [3, 0, 2, 4])
    assert len(np.unique(np.concatenate([existing, out]), axis=0)) == len(existing) + len(new)
    assert add_suffix(np.zeros((0, 2), np.int64)).shape == (0, 3)


def test_errors_list_choices(small):
    with pytest.raises(ValueError, match="expected one of"):
        make_codec(CodecConfig(scheme="nope"))
    with pytest.raises(ValueError, match="not fitted"):
        make_codec(CodecConfig(scheme="rqkmeans")).encode(small)
    with pytest.raises(ValueError, match="at least"):
        make_codec(CodecConfig(scheme="rqvae")).fit(small[:100])
    with pytest.raises(ValueError, match=r"shape \(m, 3\)"):
        add_suffix(np.zeros((2, 2), np.int64), existing=np.zeros((1, 2), np.int64))
