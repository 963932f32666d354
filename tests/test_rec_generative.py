"""Generative recommender (TIGER-style) end to end on a planted-pattern synthetic set: learns the pattern,
only valid items come out, save/load round trip, new items without retraining."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from genir.config import CodecConfig, RecConfig
from genir.rec.protocol import Interactions, eval_queries
from genir.rec.recommender import Recommender
from genir.rec.synthetic import planted_sequences

CFG = RecConfig(item_embedding="cooc", cooc_dim=16, codec=CodecConfig(scheme="rqkmeans", levels=2, codebook_size=8),
                d_model=32, encoder_layers=1, decoder_layers=1, heads=2, d_ff=64, dropout=0.0, lr=3e-3,
                batch_size=64, max_epochs=12, patience=3, beam_size=10, bf16=False,
                sasrec_dim=16, sasrec_layers=1, sasrec_dropout=0.0, sasrec_lr=1e-2, sasrec_batch_size=64)


@pytest.fixture(scope="module")
def built() -> Recommender:
    return Recommender.build(planted_sequences(num_users=300, seed=0), CFG, modes=("generative", "popular", "sasrec"),
                             dataset="planted")


def _recall(report: dict, mode: str) -> float:
    return next(r["metrics"]["R@10"] for r in report["results"] if r["mode"] == mode)


def test_learns_planted_pattern(built):
    report = built.evaluate("test")
    assert report["num_queries"] == 300 and report["dataset"] == "planted"
    gen, pop, sas = _recall(report, "generative"), _recall(report, "popular"), _recall(report, "sasrec")
    # the next item follows the last one with p = 0.9; popularity is near 10/60
    assert gen > pop + 0.3, (gen, pop)
    assert sas > pop + 0.3, (sas, pop)
    assert built.reports["generative"]["train"]["best_epoch"] >= 1


def test_outputs_are_valid_distinct_items(built):
    data = built.data
    q = eval_queries(data, "test")
    ranked = built.ranker("generative").rank(q.histories, q.lengths, q.users, k=10)
    assert ranked.shape == (len(q), 10)
    assert ((ranked >= 0) & (ranked < data.num_items)).all()
    assert all(len(set(row)) == 10 for row in ranked.tolist())


def test_recommend_by_user_and_history(built):
    out = built.recommend(user="u3", k=5)
    assert [r["rank"] for r in out] == [1, 2, 3, 4, 5]
    assert all(r["item_id"] in built.data.item_ids for r in out)
    assert out[0]["score"] >= out[-1]["score"]
    # a history ending in i7 predicts its chain successor i8
    top = built.recommend(history=["i6", "i7"], k=10)
    assert "i8" in [r["item_id"] for r in top[:3]]
    with pytest.raises(ValueError, match="unknown user"):
        built.recommend(user="nobody")
    with pytest.raises(ValueError, match="unknown item ids"):
        built.recommend(history=["i7", "zzz"])
    with pytest.raises(ValueError, match="exactly one"):
        built.recommend(k=3)


def test_save_load_round_trip(built, tmp_path):
    built.save(tmp_path / "idx")
    again = Recommender.load(tmp_path / "idx")
    assert again.modes == built.modes
    for mode in built.modes:
        for user in ("u5", "u17", "u200"):
            assert again.recommend(user=user, mode=mode) == built.recommend(user=user, mode=mode)


def test_new_item_becomes_recommendable_without_retraining(built, tmp_path):
    built.save(tmp_path / "idx")
    rec = Recommender.load(tmp_path / "idx")
    before = {k: v.clone() for k, v in rec.generative.model.state_dict().items()}
    twin = rec.data.item_ids.index("i8")
    emb = rec.generative.vectors.combined()[twin:twin + 1]
    codes = rec.add_items(["new-item"], embeddings=emb)
    new_idx = rec.data.num_items - 1
    assert rec.generative.trie.lookup(codes)[0] == new_idx
    assert (codes[0, :-1] == rec.generative.codes[twin, :-1]).all()  # lands on its twin's prefix, fresh suffix
    top = [r["item_id"] for r in rec.recommend(history=["i6", "i7"], k=10)]
    assert "new-item" in top
    assert all(torch_equal(before[k], v) for k, v in rec.generative.model.state_dict().items())
    # popularity ranks it last but knows it; re-adding the same id is refused
    assert rec.popular.counts[new_idx] == 0
    with pytest.raises(ValueError, match="already present"):
        rec.add_items(["new-item"], embeddings=emb)
    # and it survives a save/load
    rec.save(tmp_path / "idx")
    assert "new-item" in [r["item_id"] for r in Recommender.load(tmp_path / "idx").recommend(history=["i6", "i7"], k=10)]


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_evaluate_on_aligned_data_and_errors(built):
    seqs = planted_sequences(num_users=300, seed=0)
    metrics = lambda report: [(r["mode"], r["metrics"]) for r in report["results"]]  # noqa: E731
    assert metrics(built.evaluate("test", modes=["popular"], sequences=seqs)) == metrics(built.evaluate("test", modes=["popular"]))
    with pytest.raises(ValueError, match="expected some of"):
        built.evaluate("test", modes=["bogus"])
    with pytest.raises(ValueError, match="expected one of"):
        built.evaluate("dev")


def test_history_item_embeddings_learn_and_survive_new_items(tmp_path):
    from dataclasses import replace

    cfg = replace(CFG, history_item_embedding=True)
    rec = Recommender.build(planted_sequences(num_users=300, seed=0), cfg, modes=("generative", "popular"),
                            dataset="planted")
    assert rec.generative.model.encoder.item_emb.num_embeddings == rec.data.num_items + 1
    report = rec.evaluate("test")
    assert _recall(report, "generative") > _recall(report, "popular") + 0.3
    rec.save(tmp_path / "idx")
    again = Recommender.load(tmp_path / "idx")
    assert again.recommend(user="u5") == rec.recommend(user="u5")
    # an item added later has no learned embedding: it is read through its codes (the zero row), and the
    # embedding table is not touched
    twin = again.data.item_ids.index("i7")
    again.add_items(["late"], embeddings=again.generative.vectors.combined()[twin:twin + 1])
    table = again.generative.model.encoder.item_emb.weight.detach().clone()
    top = [r["item_id"] for r in again.recommend(history=["i6", "late"], k=10)]
    assert len(top) == 10 and set(top) <= set(again.data.item_ids)
    assert bool((again.generative.model.encoder.item_emb.weight == table).all())
    assert not again.generative.model.encoder.item_emb.weight[-1].any()


def test_fingerprints_separate_the_two_models():
    from dataclasses import replace

    from genir.rec.training import fingerprint_of

    arr = np.arange(6)
    base = {m: fingerprint_of(CFG, arr, model=m) for m in ("generative", "sasrec")}
    tuned_gen = replace(CFG, lr_decay=0.8, dropout=0.3)
    tuned_sas = replace(CFG, sasrec_lr=1e-3)
    assert fingerprint_of(tuned_gen, arr, model="sasrec") == base["sasrec"]
    assert fingerprint_of(tuned_gen, arr, model="generative") != base["generative"]
    assert fingerprint_of(tuned_sas, arr, model="generative") == base["generative"]
    assert fingerprint_of(tuned_sas, arr, model="sasrec") != base["sasrec"]
    assert fingerprint_of(replace(CFG, max_history=10), arr, model="sasrec") != base["sasrec"]
    assert fingerprint_of(CFG, arr + 1, model="sasrec") != base["sasrec"]


def test_recency_embeddings_learn_and_match_between_training_and_serving():
    from dataclasses import replace

    import torch

    from genir.rec.tiger import TigerModel

    cfg = replace(CFG, recency_embedding=True, history_item_embedding=False)
    # a window encoded once and cut to a prefix reads the same memory as that prefix encoded alone
    torch.manual_seed(0)
    model = TigerModel((8, 8, 3), cfg=cfg).eval()
    torch.nn.init.normal_(model.encoder.recency_emb.weight)
    codes = torch.randint(0, 3, (1, 5, 3))
    buckets = torch.tensor([4])
    with torch.no_grad():
        whole, _ = model.encoder(codes, torch.tensor([5]), buckets)
        alone, _ = model.encoder(codes[:, :3], torch.tensor([3]), buckets)
        cut = model.encoder.with_recency(whole[:, :4], torch.tensor([3]))
        assert torch.allclose(cut, model.encoder.with_recency(alone, torch.tensor([3])), atol=1e-5)
        assert not torch.allclose(cut, whole[:, :4])
    rec = Recommender.build(planted_sequences(num_users=300, seed=0), cfg, modes=("generative", "popular"),
                            dataset="planted")
    assert rec.generative.model.encoder.recency_emb.weight.abs().sum() > 0  # trained away from its zero start
    report = rec.evaluate("test")
    assert _recall(report, "generative") > _recall(report, "popular") + 0.3


def test_label_smoothing_reaches_the_training_loss():
    from dataclasses import replace

    import torch

    from genir.rec.tiger import TigerModel

    codes, lengths, buckets = torch.randint(0, 3, (4, 5, 3)), torch.tensor([5, 3, 2, 1]), torch.tensor([0, 1, 2, 3])
    target = torch.randint(0, 3, (4, 3))
    losses = []
    for smoothing in (0.0, 0.2):
        torch.manual_seed(0)
        model = TigerModel((8, 8, 3), cfg=replace(CFG, label_smoothing=smoothing, history_item_embedding=False)).eval()
        with torch.no_grad():
            losses.append(float(model.loss(codes, lengths, buckets, target)))
    assert losses[0] != pytest.approx(losses[1])


# --- one device for every model (issue 13): checked on CPU; eval/gpu_check.sh runs the same paths on CUDA ------
class DeviceTensor(torch.Tensor):
    """Stands in for a CUDA tensor on a CPU-only machine: ``.numpy()`` (and np.asarray) fails until ``.cpu()``
    brings it to the host, as on a GPU; every op on it gives a DeviceTensor again."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert a device tensor to numpy; use .cpu() first")

    def cpu(self, *args, **kwargs):
        return super().cpu(*args, **kwargs).as_subclass(torch.Tensor)


def on_device(res):
    """A decoding result (frozen dataclass of tensors) with every tensor a DeviceTensor."""
    from dataclasses import fields, replace

    return replace(res, **{f.name: getattr(res, f.name).as_subclass(DeviceTensor) for f in fields(res)})


def test_model_outputs_come_to_the_host_with_cpu_before_numpy(built, tmp_path, monkeypatch):
    import genir.rec.tiger as tiger
    from genir.rec.sasrec import SASRec

    built.save(tmp_path / "idx")
    rec = Recommender.load(tmp_path / "idx", device="cpu")
    twin = rec.data.item_ids.index("i8")
    # serving merges new items too
    rec.add_items(["new-item"], embeddings=rec.generative.vectors.combined()[twin:twin + 1])
    q = eval_queries(rec.data, "test")
    calls = [("generative", dict(user="u3")), ("generative", dict(history=["i6", "i7"])), ("sasrec", dict(user="u3"))]
    expected = [rec.recommend(**kw, mode=mode) for mode, kw in calls]
    ranked = {mode: rec.ranker(mode).rank(q.histories, q.lengths, q.users, k=10) for mode in ("generative", "sasrec")}
    beam, prefix, logits = tiger.constrained_beam_search, tiger.prefix_beam_search, SASRec.logits
    monkeypatch.setattr(tiger, "constrained_beam_search", lambda *a, **kw: on_device(beam(*a, **kw)))
    monkeypatch.setattr(tiger, "prefix_beam_search", lambda *a, **kw: on_device(prefix(*a, **kw)))
    monkeypatch.setattr(SASRec, "logits", lambda self, h, **kw: logits(self, h, **kw).as_subclass(DeviceTensor))
    assert [rec.recommend(**kw, mode=mode) for mode, kw in calls] == expected
    for mode, want in ranked.items():
        assert (rec.ranker(mode).rank(q.histories, q.lengths, q.users, k=10) == want).all()


def test_one_device_reaches_every_model_and_the_trie(built, tmp_path):
    built.save(tmp_path / "idx")
    rec = Recommender.load(tmp_path / "idx", device="cpu")
    assert rec.device == torch.device("cpu")
    assert {p.device for m in (rec.generative.model, rec.sasrec) for p in m.parameters()} == {rec.device}
    assert rec.generative.trie.device == rec.device
    assert rec.ranker("generative").device == rec.ranker("sasrec").device == rec.device
    with pytest.raises(ValueError, match="unknown device"):
        Recommender.load(tmp_path / "idx", device="tpu")
    with pytest.raises(ValueError, match="unknown device"):  # refused before any training
        Recommender.build(planted_sequences(num_users=20, seed=1), CFG, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no (CUDA )?GPU"):
            Recommender.load(tmp_path / "idx", device="cuda")


def test_item_text_is_embedded_on_the_recommenders_device(monkeypatch):
    from dataclasses import replace

    import genir.embed

    seen = []

    class SpyEmbedder:
        def __init__(self, cfg, *, device: str) -> None:
            seen.append(device)

        def encode(self, texts, *, progress=None):
            return np.random.default_rng(0).normal(size=(len(texts), 8)).astype(np.float32)

    monkeypatch.setattr(genir.embed, "Embedder", SpyEmbedder)
    rec = Recommender.build(planted_sequences(num_users=40, seed=1), replace(CFG, item_embedding="text", max_epochs=1),
                            modes=("generative",), device="cpu")
    assert seen == ["cpu"] and rec.generative.vectors.source == "text"
    rec.add_items(["new-item"], texts=["group 1 item new"])
    assert seen == ["cpu", "cpu"]



def _without_text():
    """Planted sequences whose items have no text (as Amazon Sports here)."""
    import pyarrow as pa

    from genir.data.types import Sequences

    seqs = planted_sequences(num_users=40, seed=1)
    return Sequences(seqs.table, seqs.items.set_column(1, "text", pa.array([""] * seqs.items.num_rows, pa.string())))

@pytest.mark.parametrize("no_text, source", [("sasrec", "sasrec"), ("cooc", "cooc")])
def test_auto_item_ids_without_text_follow_the_rule(no_text, source):
    # planted items have no text: auto takes item_embedding_no_text, here with the build's own SASRec
    cfg = replace(CFG, item_embedding="auto", item_embedding_no_text=no_text, max_epochs=1)
    rec = Recommender.build(_without_text(), cfg, modes=("generative", "sasrec"), device="cpu")
    assert rec.generative.vectors.source == source == rec.reports["generative"]["item_embedding"]
    if source == "sasrec":
        table = rec.sasrec.item_table()
        np.testing.assert_allclose(rec.generative.vectors.sasrec, table / np.linalg.norm(table, axis=1, keepdims=True),
                                   atol=1e-5)


def test_auto_item_ids_without_text_or_sasrec_fall_back_to_cooc_and_bad_rule_is_refused(tmp_path):
    cfg = replace(CFG, item_embedding="auto", item_embedding_no_text="sasrec", max_epochs=1)
    rec = Recommender.build(_without_text(), cfg, modes=("generative",), device="cpu")
    assert rec.generative.vectors.source == "cooc"
    with pytest.raises(ValueError, match="unknown item_embedding_no_text 'bpr'"):
        Recommender.build(_without_text(), replace(cfg, item_embedding_no_text="bpr"),
                          modes=("generative",), device="cpu", checkpoint_dir=tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()
