"""Item vectors for semantic IDs: co-occurrence factorisation, source resolution, imputation for new items."""
from __future__ import annotations

import numpy as np
import pytest

from genir.rec.items import (ItemVectors, combine, cooc_embeddings, cooc_matrix, impute_cooc, new_item_vectors,
                             resolve_source)
from genir.rec.protocol import Interactions, train_parts
from genir.rec.synthetic import planted_sequences


def test_cooc_matrix_counts_pairs_within_window():
    m = cooc_matrix([np.array([0, 1, 2, 0])], 4, window=1).toarray()
    assert m[0, 1] == m[1, 0] == 1 and m[1, 2] == 1 and m[2, 0] == 1 and m[0, 2] == 1
    assert m[3].sum() == 0 and np.trace(m) == 0


def test_cooc_embeddings_place_chain_members_together():
    data = Interactions.from_sequences(planted_sequences(num_users=400, num_items=60, chain=6, seed=0))
    vec = cooc_embeddings(train_parts(data), data.num_items, dim=16, window=2)
    assert vec.shape == (60, 16) and np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-5)
    sims = vec @ vec.T
    same = np.equal.outer(np.arange(60) // 6, np.arange(60) // 6) & ~np.eye(60, dtype=bool)
    assert sims[same].mean() > sims[~same & ~np.eye(60, dtype=bool)].mean() + 0.3


def test_cold_items_get_zero_vectors_and_imputation_uses_text_neighbours():
    vec = cooc_embeddings([np.array([0, 1, 2, 0, 1])], 5, dim=2, window=1)
    assert np.allclose(vec[3:], 0)
    text = np.eye(4, dtype=np.float32)
    cooc = np.array([[1, 0], [0, 1], [0, 0], [1, 0]], dtype=np.float32)
    out = impute_cooc(np.array([[1.0, 0, 0, 0.1]], dtype=np.float32), text, cooc, k=1)
    assert np.allclose(out, [[1, 0]])


def test_resolve_source_and_combine():
    assert resolve_source("auto", ["a", ""]) == "text+cooc"
    assert resolve_source("auto", ["", ""]) == "cooc"
    # without text, auto follows item_embedding_no_text: the build's SASRec table when it has one, else cooc
    assert resolve_source("auto", ["", ""], no_text="sasrec", has_sasrec=True) == "sasrec"
    assert resolve_source("auto", ["", ""], no_text="sasrec", has_sasrec=False) == "cooc"
    assert resolve_source("auto", ["a", ""], no_text="sasrec", has_sasrec=True) == "text+cooc"
    with pytest.raises(ValueError, match="item_embedding_no_text 'bpr'"):
        resolve_source("auto", ["", ""], no_text="bpr")
    with pytest.raises(ValueError, match="has none"):
        resolve_source("text", ["", ""])
    with pytest.raises(ValueError, match="expected one of"):
        resolve_source("titles", ["a"])
    both = combine(np.ones((2, 3), np.float32) / np.sqrt(3), np.array([[1, 0], [0, 0]], np.float32))
    assert np.allclose(np.linalg.norm(both, axis=1), 1)


def test_new_items_need_text_vectors_when_ids_come_from_interactions():
    only_cooc = ItemVectors("cooc", None, np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="pass embeddings="):
        new_item_vectors(["x"], only_cooc)


def test_new_item_from_text_lands_near_its_textual_neighbour():
    from genir.rec.items import text_embeddings

    texts = ["OPI, Makeup, Nails, Nail Polish", "Hair Care, Shampoos", "Skin Care, Face, Creams & Moisturizers"]
    known = ItemVectors("text+cooc", text_embeddings(texts), np.eye(3, dtype=np.float32))
    vec = new_item_vectors(["Essie, Makeup, Nails, Nail Polish"], known)
    assert vec.shape == (1, 384 + 3)
    assert int(np.argmax(vec @ known.combined().T)) == 0


def test_sasrec_item_table_as_item_vectors_with_unseen_items_imputed_from_text(tmp_path):
    from genir.rec.items import item_embeddings

    texts = ["a", "b", "c", "d"]
    table = np.array([[3, 0], [0, 2], [1, 1], [5, 5]], dtype=np.float32)
    # item 3 never appears in a training sequence: its row never learned from a positive
    only = item_embeddings(texts, [np.array([0, 1, 2])], source="sasrec", sasrec_table=table)
    assert only.source == "sasrec" and only.text is None and only.cooc is None
    np.testing.assert_allclose(only.combined(), table / np.linalg.norm(table, axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(ValueError, match="needs the trained SASRec's item table"):
        item_embeddings(texts, [np.array([0, 1, 2])], source="sasrec")
    with pytest.raises(ValueError, match="has none"):
        resolve_source("text+sasrec", ["", ""])
    only.save(tmp_path / "v.safetensors")
    back = ItemVectors.load(tmp_path / "v.safetensors")
    assert back.source == "sasrec" and np.array_equal(back.sasrec, only.sasrec)


def test_text_and_sasrec_vectors_impute_unseen_items_and_new_ones_from_text_neighbours(monkeypatch):
    import genir.rec.items as items

    text = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.9, 0.1, 0]], dtype=np.float32)
    monkeypatch.setattr(items, "text_embeddings", lambda texts, **kw: text[[int(t) for t in texts]])
    table = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)
    vec = items.item_embeddings(["0", "1", "2", "3"], [np.array([0, 1, 2])], source="text+sasrec",
                                sasrec_table=table)
    # unseen item 3 takes the mean SASRec vector of its textual neighbours among the seen items, not its own
    # untrained row
    np.testing.assert_allclose(vec.sasrec[3], items.impute_cooc(text[3:], text[:3], table[:3])[0], atol=1e-6)
    assert vec.sasrec[3] @ table[3] < 0.5
    np.testing.assert_allclose(vec.sasrec[:3], table[:3], atol=1e-6)
    new = items.new_item_vectors(["3"], vec)
    np.testing.assert_allclose(new, vec.combined()[3:], atol=1e-6)
