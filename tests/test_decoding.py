"""IdDecoder incremental decoding and trie-constrained beam search, checked against brute force."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genir.decoding import constrained_beam_search, prefix_beam_search
from genir.model import IdDecoder
from genir.trie import IdTrie


def _codes(rng: np.random.Generator, n: int, vocab: tuple[int, ...]) -> np.ndarray:
    """n distinct random IDs; the last level acts as a collision suffix."""
    seen: set[tuple[int, ...]] = set()
    while len(seen) < n:
        seen.add(tuple(int(rng.integers(v)) for v in vocab))
    return np.array(sorted(seen), dtype=np.int64)[rng.permutation(n)]


def _setup(seed: int, n_ids: int, vocab: tuple[int, ...], batch: int = 3, d_mem: int = 24):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    codes = _codes(rng, n_ids, vocab)
    trie = IdTrie.from_codes(codes, vocab_sizes=vocab)
    dec = IdDecoder(vocab, d_model=32, n_layers=2, n_heads=4, d_mem=d_mem, dropout=0.0).eval()
    # random weights are near-uniform at init; scale up so the ranking is not decided by ties
    with torch.no_grad():
        for p in dec.parameters():
            p.mul_(20.0 if p.dim() > 1 else 1.0)
    memory = torch.randn(batch, 7, d_mem)
    mask = torch.ones(batch, 7, dtype=torch.bool)
    mask[1:, 4:] = False  # padded rows
    return codes, trie, dec, memory, mask


def _exact_scores(dec: IdDecoder, memory, mask, codes: np.ndarray, trie: IdTrie | None, renormalize: bool) -> np.ndarray:
    """(B, n) log-prob of every ID by teacher forcing; renormalised over the trie's allowed codes if asked."""
    b, n = memory.shape[0], len(codes)
    c = torch.from_numpy(codes)
    out = torch.zeros(b, n)
    with torch.no_grad():
        for q in range(b):
            logits = dec(memory[q : q + 1].expand(n, -1, -1), mask[q : q + 1].expand(n, -1), c)
            for level, lg in enumerate(logits):
                if renormalize:
                    allowed = torch.zeros_like(lg, dtype=torch.bool)
                    for i in range(n):  # brute force: codes seen after the same prefix
                        same = (c[:, :level] == c[i, :level]).all(dim=1)
                        allowed[i, c[same, level]] = True
                    lg = lg.masked_fill(~allowed, float("-inf"))
                out[q] += F.log_softmax(lg, dim=-1).gather(1, c[:, level : level + 1]).squeeze(1)
    return out.numpy()


def test_incremental_steps_match_teacher_forcing():
    codes, trie, dec, memory, mask = _setup(0, 40, (5, 4, 3))
    c = torch.from_numpy(codes[:3])
    full = dec(memory, mask, c)
    cache = dec.start(memory, mask)
    prev = None
    for level in range(3):
        step = dec.step(cache, prev, level)[:, 0]
        torch.testing.assert_close(step, full[level], rtol=1e-4, atol=1e-4)
        prev = c[:, level : level + 1]


@pytest.mark.parametrize("renormalize", [False, True])
def test_exhaustive_beam_equals_brute_force(renormalize):
    # a beam as wide as the whole ID set is exact: results must equal the brute-force ranking
    vocab = (4, 3, 3)
    codes, trie, dec, memory, mask = _setup(1, 25, vocab)
    res = constrained_beam_search(dec, memory, mask, trie, beam_size=36, num_return=25, renormalize=renormalize)
    exact = _exact_scores(dec, memory, mask, codes, trie, renormalize)
    for q in range(memory.shape[0]):
        order = np.argsort(-exact[q], kind="stable")
        np.testing.assert_allclose(res.scores[q].numpy(), exact[q][order], rtol=1e-4, atol=1e-4)
        got = res.doc_idx[q].numpy()
        assert sorted(got.tolist()) == list(range(25))
        np.testing.assert_array_equal(res.codes[q].numpy(), codes[got])


def test_random_weights_always_valid_distinct_sorted():
    for seed in range(25):
        rng = np.random.default_rng(100 + seed)
        vocab = tuple(int(v) for v in rng.integers(2, 9, size=int(rng.integers(2, 5))))
        n_ids = int(rng.integers(1, min(60, int(np.prod(vocab))) + 1))
        codes, trie, dec, memory, mask = _setup(100 + seed, n_ids, vocab)
        beam, num = int(rng.integers(1, 30)), int(rng.integers(1, 40))  # often beams > continuations
        res = constrained_beam_search(dec, memory, mask, trie, beam_size=beam, num_return=num, renormalize=bool(seed % 2))
        assert res.doc_idx.shape == (3, num) and res.codes.shape == (3, num, len(vocab))
        for q in range(3):
            docs, scores = res.doc_idx[q].numpy(), res.scores[q].numpy()
            real = docs >= 0
            assert real[: real.sum()].all(), "padding only at the end"
            assert real.sum() == min(num, n_ids) or beam < n_ids  # exhaustive when the beam covers every ID
            assert len(set(docs[real].tolist())) == real.sum(), "distinct"
            np.testing.assert_array_equal(codes[docs[real]], res.codes[q].numpy()[real])  # each ID is that doc's
            assert np.all(np.diff(scores[real]) <= 1e-6), "sorted descending"
            assert np.all(np.isfinite(scores[real])) and np.all(scores[real] <= 1e-6)
            assert np.all(np.isneginf(scores[~real]))


def test_beams_wider_than_the_trie_return_every_id_once():
    codes, trie, dec, memory, mask = _setup(2, 3, (6, 6, 2))
    res = constrained_beam_search(dec, memory, mask, trie, beam_size=50, num_return=10)
    for q in range(3):
        assert sorted(res.doc_idx[q, :3].tolist()) == [0, 1, 2]
        assert (res.doc_idx[q, 3:] == -1).all()


def test_batch_results_do_not_depend_on_batch_neighbours():
    codes, trie, dec, memory, mask = _setup(3, 50, (6, 5, 3))
    together = constrained_beam_search(dec, memory, mask, trie, beam_size=8, num_return=5)
    for q in range(3):
        alone = constrained_beam_search(dec, memory[q : q + 1], mask[q : q + 1], trie, beam_size=8, num_return=5)
        torch.testing.assert_close(alone.doc_idx[0], together.doc_idx[q])
        torch.testing.assert_close(alone.scores[0], together.scores[q], rtol=1e-5, atol=1e-5)


def test_unconstrained_decodes_best_free_ids():
    codes, trie, dec, memory, mask = _setup(4, 10, (3, 3, 2))
    res = constrained_beam_search(dec, memory, mask, None, beam_size=18, num_return=18)
    assert (res.doc_idx == -1).all()
    every = np.array(np.meshgrid(*[np.arange(v) for v in (3, 3, 2)], indexing="ij")).reshape(3, -1).T
    exact = _exact_scores(dec, memory, mask, every, None, False)
    for q in range(3):
        np.testing.assert_allclose(res.scores[q].numpy(), np.sort(exact[q])[::-1], rtol=1e-4, atol=1e-4)


def test_prefix_search_returns_existing_prefixes():
    codes, trie, dec, memory, mask = _setup(5, 60, (5, 5, 4))
    res = prefix_beam_search(dec, memory, mask, trie, level=2, beam_size=6)
    prefixes = {tuple(r) for r in codes[:, :2].tolist()}
    for q in range(3):
        for node, code in zip(res.nodes[q].tolist(), res.codes[q].tolist()):
            if node < 0:
                continue
            assert tuple(code) in prefixes
            under = trie.docs_under(node, 2)
            assert len(under) and (codes[under, :2] == code).all()


def test_trie_wider_than_decoder_never_emits_unreachable_ids():
    # a suffix added after training (code 3) exceeds the decoder's suffix vocabulary (3): skipped, not broken
    vocab = (3, 3, 3)
    codes, _, dec, memory, mask = _setup(6, 12, vocab)
    extra = np.array([[0, 0, 3], [1, 1, 3]])
    trie = IdTrie.from_codes(np.concatenate([codes, extra]))
    res = constrained_beam_search(dec, memory, mask, trie, beam_size=30, num_return=14)
    got = res.doc_idx[res.doc_idx >= 0]
    assert set(got.tolist()) == set(range(12))


def test_errors_name_the_fix():
    codes, trie, dec, memory, mask = _setup(7, 5, (3, 3))
    with pytest.raises(ValueError, match="levels"):
        constrained_beam_search(dec, memory, mask, IdTrie.from_codes(np.array([[0, 0, 0]])), beam_size=2, num_return=2)
    with pytest.raises(ValueError, match=">= 1"):
        constrained_beam_search(dec, memory, mask, trie, beam_size=0, num_return=2)
    with pytest.raises(ValueError, match="d_mem"):
        constrained_beam_search(dec, memory[:, :, :5], mask, trie, beam_size=2, num_return=2)


# ---------------------------------------------------------------------------------------------- ID check
def _id_check(res, codes: np.ndarray, deleted: np.ndarray | None = None):
    from genir.semantic import check_decoded_ids

    return check_decoded_ids(res.codes.numpy(), res.doc_idx.numpy(), codes, num_docs=len(codes), deleted=deleted)


def test_id_check_passes_constrained_and_reports_an_unconstrained_decoder():
    # 8 IDs out of 5 * 4 * 3 = 60 possible: a random decoder left free mostly writes IDs no document has
    codes, trie, dec, memory, mask = _setup(8, 8, (5, 4, 3))
    on = constrained_beam_search(dec, memory, mask, trie, beam_size=8, num_return=8)
    check = _id_check(on, codes)
    assert (check.outputs, check.valid, check.share) == (24, 24, 1.0)
    off = constrained_beam_search(dec, memory, mask, trie, beam_size=8, num_return=8, constrained=False)
    check = _id_check(off, codes)
    assert check.outputs == 24 and check.valid < check.outputs, "the unconstrained decoder must be caught"
    # what the check calls valid is exactly the decoded IDs that are documents, mapped to the right one
    real = {tuple(c): i for i, c in enumerate(codes.tolist())}
    expected = sum(real.get(tuple(c)) == d for c, d in zip(off.codes.reshape(-1, 3).tolist(), off.doc_idx.reshape(-1).tolist()))
    assert check.valid == expected
    with pytest.raises(ValueError, match="constrained=True"):
        constrained_beam_search(dec, memory, mask, trie, beam_size=8, num_return=8, renormalize=True, constrained=False)


def test_id_check_catches_a_trie_that_maps_ids_to_the_wrong_documents():
    # every output is a trie leaf, yet the leaves point at other rows: a check that asks the same trie passes
    codes, _, dec, memory, mask = _setup(9, 12, (4, 3, 3))
    wrong = IdTrie.from_codes(codes, np.roll(np.arange(12), 1), vocab_sizes=(4, 3, 3))
    res = constrained_beam_search(dec, memory, mask, wrong, beam_size=12, num_return=12)
    got = res.doc_idx.numpy()
    assert (wrong.lookup(res.codes.numpy()[got >= 0]) == got[got >= 0]).all() and (got >= 0).any()
    assert _id_check(res, codes).valid == 0


def test_id_check_counts_each_failure_and_ignores_padding():
    from genir.semantic import check_decoded_ids

    ids = np.array([[0, 1], [1, 1], [2, 0]])
    codes = np.array([[[0, 1], [1, 1], [2, 0], [1, 0], [2, 0], [-1, -1]]])
    doc = np.array([[0, 1, 2, -1, 7, -1]])  # ok, ok, removed, no document, outside the table, padding
    check = check_decoded_ids(codes, doc, ids, num_docs=3, deleted=np.array([False, False, True]))
    assert (check.outputs, check.valid) == (5, 2)
    assert check_decoded_ids(codes, doc, ids, num_docs=3).valid == 3
    swapped = check_decoded_ids(codes[:, :2], doc[:, [1, 0]], ids, num_docs=3)  # real documents, wrong codes
    assert (swapped.outputs, swapped.valid) == (2, 0)
    assert np.isnan(check_decoded_ids(codes[:, 5:], doc[:, 5:], ids, num_docs=3).share)
    with pytest.raises(ValueError, match="corpus table"):
        check_decoded_ids(codes, doc, ids, num_docs=4)
