"""MS MARCO-style features: the passage pseudo-query mix, graded relevance thresholds, R@1, indexes built
from several folders (namespaced ids) and a fusion carried over from another index."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genir.config import TrainConfig, from_dict
from genir.data import Corpus, Qrels, merge_corpora
from genir.metrics import DEFAULT_MEASURES, evaluate_order
from genir.pseudo import PASSAGE_MIX, PSEUDO, apply_mix, make_pairs
from tests.synthetic import synthetic_corpus

PASSAGES = [
    "Suntory whisky is the most awarded house of Japanese whisky. It won the distiller of the year award.",
    "Infill is the rededication of land in an urban environment to new construction. It limits sprawl.",
    "The Water Treatment Facility supplies safe drinking water for residential and commercial customers.",
]


def test_document_mix_is_the_default_and_passage_sets_its_fields():
    # document won on msmarco-10k dev at every budget measured (README): the default for every corpus
    assert TrainConfig().pseudo_mix == "document" and apply_mix(TrainConfig()) == TrainConfig()
    passage = apply_mix(TrainConfig(pseudo_mix="passage"))
    assert {field: getattr(passage, field) for field in PASSAGE_MIX} == PASSAGE_MIX
    with pytest.raises(ValueError, match="pseudo_mix 'auto'"):
        apply_mix(TrainConfig(pseudo_mix="auto"))


def test_passage_mix_makes_keyword_queries_from_rare_words_in_reading_order():
    cfg = TrainConfig(pseudo_per_doc=6, pseudo_mix="passage", seed=3)
    pairs = make_pairs(PASSAGES, [""] * 3, [], [], cfg=cfg)
    assert pairs.counts()["pseudo"] == 18
    again = make_pairs(PASSAGES, [""] * 3, [], [], cfg=cfg)
    assert again.texts == pairs.texts and np.array_equal(again.doc_idx, pairs.doc_idx)  # seeded
    for doc, passage in enumerate(PASSAGES):
        words = [w.strip(".,").lower() for w in passage.split()]
        texts = [pairs.texts[t] for t, d, k in zip(pairs.text_idx, pairs.doc_idx, pairs.kind) if d == doc and k == PSEUDO]
        assert len(set(texts)) == 6
        keyword = [t for t in texts if t == t.lower() and "." not in t and t not in passage.lower()]
        assert len(keyword) >= 1, texts  # keyword queries are not contiguous spans of the passage
        for query in keyword:
            positions = [words.index(w) for w in query.split()]
            assert positions == sorted(positions), query  # reading order
            assert "the" not in query.split()  # a frequent word across the corpus is never a keyword


def test_document_mix_is_unchanged_by_the_passage_options():
    """SciFact's mix (titled documents) must give the same pairs as before the passage mix existed."""
    corpus = synthetic_corpus(per_topic=3)
    texts, titles = corpus.table.column("text").to_pylist(), corpus.table.column("title").to_pylist()
    cfg = TrainConfig(pseudo_mix="document", seed=1)
    pairs = make_pairs(texts, titles, [], [], cfg=cfg)
    old = make_pairs(texts, titles, [], [], cfg=from_dict(TrainConfig, {"seed": 1}))  # a saved pre-mix config
    assert old.texts == pairs.texts
    assert from_dict(TrainConfig, {}).pseudo_mix == "document"  # saved configs predating the field


def test_merge_corpora_namespaces_extra_ids_and_refuses_clashes():
    a = Corpus.from_records(["1", "2"], ["", ""], ["alpha", "beta"])
    b = Corpus.from_records(["1", "9"], ["", ""], ["gamma", "delta"])
    merged = merge_corpora(a, [("pool", b)])
    assert merged.doc_ids == ["1", "2", "pool:1", "pool:9"]
    assert merged.table.column("text").to_pylist() == ["alpha", "beta", "gamma", "delta"]
    with pytest.raises(ValueError, match="clashes"):
        merge_corpora(a, [("pool", b), ("pool", b)])
    with pytest.raises(ValueError, match="no ':'"):
        merge_corpora(a, [("a:b", b)])


def test_relevance_threshold_changes_binary_measures_not_ndcg():
    qrels = Qrels.__new__(Qrels)
    import pyarrow as pa

    qrels = Qrels(pa.table({"query_id": ["q", "q"], "doc_id": ["weak", "strong"], "relevance": pa.array([1, 3], pa.int32())}))
    ranked = np.array([[0, 1]])  # "weak" first, "strong" second
    at1 = evaluate_order(["q"], ranked, ["weak", "strong"], qrels, DEFAULT_MEASURES)
    at2 = evaluate_order(["q"], ranked, ["weak", "strong"], qrels, DEFAULT_MEASURES, rel=2)
    assert "R@1" in at1
    assert at1["RR@10"] == 1.0 and at2["RR@10"] == 0.5
    assert at1["R@1"] == 0.5 and at2["R@1"] == 0.0
    assert at2["R@10"] == 1.0
    assert at1["nDCG@10"] == at2["nDCG@10"] < 1.0
    with pytest.raises(ValueError, match="threshold"):
        evaluate_order(["q"], ranked, ["weak", "strong"], qrels, DEFAULT_MEASURES, rel=0)


def _genir(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GENIR_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "genir", *args], capture_output=True, text=True, env=env, timeout=600)


def _live_manifest(index_dir: Path) -> dict:
    return json.loads((index_dir / (index_dir / "CURRENT").read_text().strip() / "manifest.json").read_text())


TINY = ["--ids", "rqkmeans", "--levels", "2", "--codebook-size", "4", "--epochs", "1", "--train-batch-size", "32",
        "--checkpoint-every", "0", "--device", "cpu", "--no-verbose"]


def test_cli_extra_corpus_graded_eval_and_carried_fusion(tmp_path, write_beir, write_msmarco):
    corpus = synthetic_corpus(per_topic=6)
    ids, texts = corpus.doc_ids, corpus.table.column("text").to_pylist()
    data = write_beir("data", corpus=[{"_id": i, "title": "", "text": x} for i, x in zip(ids, texts)],
                      queries=[{"_id": f"q{n}", "text": " ".join(x.split()[:5])} for n, x in enumerate(texts)],
                      qrels={"train": [(f"q{n}", i, 1 + n % 3) for n, i in enumerate(ids)]})
    pool = write_msmarco("pool", collection=[(i, x) for i, x in zip(ids, texts)][:10], queries={}, qrels={})

    tuned = tmp_path / "tuned"
    done = _genir("index", str(data), "--out", str(tuned), *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = _live_manifest(tuned)
    assert manifest["fusion_source"]["tuned_on_queries"] > 0
    assert manifest["config"]["hybrid"]["dev_ndcg10"] > 0  # the manifest's config holds the tuned fusion
    stages = manifest["build_seconds"]
    for stage in ("load", "embed", "dense", "bm25", "ids", "trie", "pairs", "encoder_states", "train", "tune", "save", "total"):
        assert stages[stage] >= 0, stage
    assert manifest["peak_rss_mb"] > 0
    assert "seconds per stage" in done.stdout

    # documents of two folders, no labelled queries in the second: ids namespaced, fusion carried over
    merged = tmp_path / "merged"
    done = _genir("index", str(pool), "--out", str(merged), "--extra-corpus", str(data), "--fusion-from", str(tuned), *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = _live_manifest(merged)
    assert manifest["counts"]["documents"] == 10 + len(ids)
    assert manifest["sources"][1]["id_prefix"] == "data:"
    assert manifest["fusion_source"] == {"carried_from": str(tuned)}
    assert manifest["config"]["hybrid"] == _live_manifest(tuned)["config"]["hybrid"]
    hits = json.loads(_genir("search", str(merged), texts[-1], "-k", "3", "--mode", "dense", "--json").stdout)["hits"]
    assert hits[0]["doc_id"] == f"data:{ids[-1]}"
    assert hits[0]["title"] == "" and hits[0]["snippet"] == texts[-1][:200]  # untitled passages show their text

    report = tmp_path / "report.json"
    done = _genir("eval", str(tuned), "--data", str(data), "--split", "dev", "--mode", "bm25", "--rel-threshold", "2",
                  "--out", str(report))
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(report.read_text())
    assert out["relevance_threshold"] == 2 and "R@1" in out["results"][0]["metrics"]


def test_cli_refuses_bad_mix_and_fusion_source(tmp_path, write_beir):
    data = write_beir("data")
    done = _genir("index", str(data), "--out", str(tmp_path / "x"), "--pseudo-mix", "novel")
    assert done.returncode == 2 and done.stderr.startswith("error: unknown --pseudo-mix")
    base = tmp_path / "base"
    assert _genir("index", str(data), "--out", str(base), "--no-generative", "--no-verbose").returncode == 0
    done = _genir("index", str(data), "--out", str(tmp_path / "y"), "--fusion-from", str(base), *TINY)
    assert done.returncode == 2 and "no hybrid fusion" in done.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
