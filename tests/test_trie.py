"""IdTrie: masks and transitions equal a brute-force scan of the code table, before and after updates."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genir.trie import IdTrie


@st.composite
def code_tables(draw):
    """Unique random code tables (n, depth) with small vocabularies so prefixes are shared."""
    depth = draw(st.integers(1, 4))
    vocab = draw(st.lists(st.integers(1, 6), min_size=depth, max_size=depth))
    n = draw(st.integers(0, 60))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, v, size=n) for v in vocab], axis=1) if n else np.zeros((0, depth), np.int64)
    codes = np.unique(codes, axis=0)
    rng.shuffle(codes)
    doc = rng.permutation(len(codes) * 3)[: len(codes)]  # non-contiguous doc_idx
    dense_limit = draw(st.sampled_from([0, 1 << 20]))  # 0 forces the CSR path everywhere
    return codes.astype(np.int64), doc.astype(np.int64), dense_limit, seed


def walk(trie: IdTrie, prefix: np.ndarray) -> int:
    """Node id of a prefix via step(); -1 when absent."""
    node = torch.zeros(1, dtype=torch.long)
    for level, c in enumerate(prefix):
        node = trie.step(node, level, torch.tensor([int(c)]))
    return int(node[0])


def assert_matches(trie: IdTrie, codes: np.ndarray, doc: np.ndarray, rng: np.random.Generator) -> None:
    depth = trie.num_levels
    assert len(trie) == len(codes)
    # Random prefixes: half drawn from existing codes, half random (often absent).
    prefixes = []
    for _ in range(30):
        level = int(rng.integers(0, depth))
        if len(codes) and rng.random() < 0.5:
            prefixes.append(codes[rng.integers(len(codes)), :level])
        else:
            prefixes.append(np.array([rng.integers(0, v + 1) for v in trie.vocab_sizes[:level]], dtype=np.int64))
    for prefix in prefixes:
        level = len(prefix)
        match = np.all(codes[:, :level] == prefix, axis=1) if len(codes) else np.zeros(0, bool)
        expected = np.zeros(trie.vocab_sizes[level], dtype=bool)
        expected[codes[match, level]] = True
        node = walk(trie, prefix)
        assert (node >= 0) == (level == 0 or bool(match.any()))  # the root exists even when empty
        mask = trie.allowed(torch.tensor([node, -1]), level)
        assert mask.shape == (2, trie.vocab_sizes[level]) and mask.dtype == torch.bool
        np.testing.assert_array_equal(mask[0].numpy(), expected)
        assert not mask[1].any()
        if node >= 0:
            np.testing.assert_array_equal(np.sort(trie.docs_under(node, level)), np.sort(doc[match]))
    # step along every full ID, batched, then docs() recovers the document.
    node = torch.zeros(len(codes), dtype=torch.long)
    for level in range(depth):
        node = trie.step(node, level, torch.from_numpy(codes[:, level]))
    np.testing.assert_array_equal(trie.docs(node).numpy(), doc)
    np.testing.assert_array_equal(trie.lookup(codes), doc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code_tables(), st.data())
def test_trie_matches_brute_force_with_updates(table, data):
    codes, doc, dense_limit, seed = table
    rng = np.random.default_rng(seed)
    trie = IdTrie.from_codes(codes, doc, dense_limit=dense_limit)
    assert_matches(trie, codes, doc, rng)

    # Absent IDs: one code past the vocabulary, and (if any) a valid-range code not in the table.
    absent = np.array([[v for v in trie.vocab_sizes]], dtype=np.int64)
    assert trie.lookup(absent).tolist() == [-1]

    # add: new unique IDs with new doc_idx (vocab may grow by one code per level).
    grid = np.stack([rng.integers(0, v + 1, size=20) for v in trie.vocab_sizes], axis=1)
    grid = np.unique(grid, axis=0)
    fresh = grid[trie.lookup(grid) < 0]
    new_doc = np.arange(len(fresh), dtype=np.int64) + 10_000
    trie.add(fresh, new_doc)
    codes2, doc2 = np.concatenate([codes, fresh]), np.concatenate([doc, new_doc])
    assert_matches(trie, codes2, doc2, rng)

    # remove: drop a random subset; vocab sizes do not shrink.
    vocab_before = trie.vocab_sizes
    drop = data.draw(st.lists(st.sampled_from(doc2.tolist()), unique=True)) if len(doc2) else []
    trie.remove(np.array(drop, dtype=np.int64))
    keep = ~np.isin(doc2, drop)
    assert trie.vocab_sizes == vocab_before
    assert_matches(trie, codes2[keep], doc2[keep], rng)
    assert (trie.lookup(codes2[~keep]) == -1).all()


def test_save_load_identical(tmp_path):
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 40, size=(3000, 3)), axis=0)
    codes = np.concatenate([codes, np.zeros((len(codes), 1), np.int64)], axis=1)
    doc = rng.permutation(len(codes))
    for dense_limit in (0, 1 << 20):
        trie = IdTrie.from_codes(codes, doc, dense_limit=dense_limit, vocab_sizes=(64, 64, 64, 4))
        trie.save(tmp_path / str(dense_limit))
        back = IdTrie.load(tmp_path / str(dense_limit))
        assert back.vocab_sizes == (64, 64, 64, 4) and back.level_sizes == trie.level_sizes
        for level in range(trie.num_levels):
            nodes = torch.arange(-1, trie.level_sizes[level] + 1)
            assert torch.equal(trie.allowed(nodes, level), back.allowed(nodes, level))
        np.testing.assert_array_equal(back.lookup(codes), doc)


def test_dense_and_csr_agree_and_wide_vocab():
    rng = np.random.default_rng(1)
    codes = np.unique(rng.integers(0, 70_000, size=(500, 2)), axis=0)  # > 65536: 4-byte marisa keys
    dense = IdTrie.from_codes(codes)
    csr = IdTrie.from_codes(codes, dense_limit=0)
    node = torch.arange(-1, dense.level_sizes[1] + 1)
    assert torch.equal(dense.allowed(node, 1), csr.allowed(node, 1))
    code = torch.from_numpy(rng.integers(-1, 70_001, size=len(node)))
    assert torch.equal(dense.step(node, 1, code), csr.step(node, 1, code))


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="add_suffix"):
        IdTrie.from_codes(np.array([[1, 2], [1, 2]]))
    trie = IdTrie.from_codes(np.array([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="already exist"):
        trie.add(np.array([[0, 1]]), np.array([7]))
    with pytest.raises(ValueError, match="already in the trie"):
        trie.add(np.array([[2, 2]]), np.array([0]))
    with pytest.raises(ValueError, match="not in the trie"):
        trie.remove(np.array([5]))
    with pytest.raises(ValueError, match="level 2 out of range"):
        trie.allowed(torch.zeros(1, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="shape"):
        trie.lookup(np.zeros((1, 3)))


def test_empty_trie_then_add(tmp_path):
    trie = IdTrie.from_codes(np.zeros((0, 2), np.int64), vocab_sizes=(4, 4))
    assert not trie.allowed(torch.zeros(3, dtype=torch.long), 0).any()
    assert trie.lookup(np.array([[0, 0]])).tolist() == [-1]
    trie.save(tmp_path)
    assert len(IdTrie.load(tmp_path)) == 0
    trie.add(np.array([[3, 1]]), np.array([9]))
    assert trie.allowed(torch.zeros(1, dtype=torch.long), 0)[0].nonzero().ravel().tolist() == [3]
    assert trie.lookup(np.array([[3, 1]])).tolist() == [9]
