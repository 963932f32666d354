"""One MiniLM pass per query batch where a mode needs both the query embedding and the decoder's memory
(issue 16: hybrid search, tune, GDR), and the two passes of before wherever sharing would change a result."""
import dataclasses

import numpy as np
import pyarrow as pa
import pytest

import genir.semantic
from genir.config import DecodeConfig, HybridConfig, ModelConfig
from genir.data.types import Qrels, Queries
from genir.embed import load_model, mean_pooled
from genir.index import GenerativeIndex
from genir.semantic import shares_query_pass
from genir.timing import collect
from tests.synthetic import TOPICS, synthetic_corpus
from tests.test_index_generative import tiny_config

QUERIES = ["galaxy telescope", "bond market", "oven butter"]
# 60 astronomy words, then finance: the text encoder keeps 64 tokens, the embedder 256, so their vectors differ
LONG = " ".join([TOPICS["astronomy"]] * 10 + [TOPICS["finance"]] * 10)


def _train_split():
    queries = Queries.from_records(["q1", "q2"], ["telescope galaxy", "flour butter"])
    return queries, Qrels(pa.table({"query_id": ["q1", "q2"], "doc_id": ["astronomy-0", "cooking-1"], "relevance": [1, 1]}))


@pytest.fixture(scope="module")
def index():
    queries, qrels = _train_split()
    return GenerativeIndex.build(synthetic_corpus(6), tiny_config(), train_queries=queries, train_qrels=qrels,
                                 device="cpu", progress=False)


def _variant(index: GenerativeIndex, *, method: str = "rrf", batch_size: int = 64,
             precision: str | None = None) -> GenerativeIndex:
    """The same structures serving another fusion / decode batch size / embedder precision (default: the index's
    own, which its text encoder was built with; tune changes cfg: never on the fixture)."""
    precision = index.cfg.embed.precision if precision is None else precision
    cfg = dataclasses.replace(index.cfg, hybrid=HybridConfig(method=method), decode=DecodeConfig(batch_size=batch_size),
                              embed=dataclasses.replace(index.cfg.embed, precision=precision))
    return GenerativeIndex(cfg, index.corpus, index.embeddings, index.dense, index.bm25, semantic=index.semantic,
                           device="cpu")


def _count_passes(index: GenerativeIndex) -> tuple[list[int], list]:
    """(batch sizes of every MiniLM forward pass from now on, hook handles): the embedder and the text encoder both
    run the transformer's embedding layer once per pass (a trainable encoder has its own copy: both are hooked)."""
    calls: list[int] = []
    modules = {id(m): m for m in (index.embedder.model[0].auto_model.embeddings,
                                  index.semantic.retriever.model.encoder.bert.embeddings)}
    return calls, [m.register_forward_hook(lambda _m, _i, out: calls.append(out.shape[0])) for m in modules.values()]


@pytest.fixture
def passes(index):
    calls, handles = _count_passes(index)
    yield calls
    for h in handles:
        h.remove()


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_shared_pass_gives_the_results_of_two_passes(index, monkeypatch, precision):
    from genir.device import resolve_precision

    # the text encoder follows the embedder's precision, else nothing would be shared
    monkeypatch.setattr(index.semantic.retriever.model.encoder, "precision", resolve_precision(precision, "cpu"))
    assert shares_query_pass(_variant(index, precision=precision).embedder, index.semantic.retriever)
    # fp32: the shared embedding differs from the embedder's in float rounding only (~1e-7). bf16 (auto on a CPU
    # with AVX512-BF16): the embedder itself is not batch-invariant there (the same query alone or among others
    # moves up to 7e-4 a coordinate, cosine 1 - 1e-5), and the shared pass batches by decode batch: scores (dot
    # products of unit vectors) within 1e-3
    atol = 1e-5 if resolve_precision(precision, "cpu") == "fp32" else 1e-3
    dev = Queries.from_records(["t1", "t2", "t3"], [*QUERIES[:2], LONG])
    dev_qrels = Qrels(pa.table({"query_id": ["t1", "t2", "t3"], "doc_id": ["astronomy-3", "finance-2", "astronomy-1"],
                                "relevance": [1, 1, 1]}))

    def run() -> tuple[dict, dict]:
        out = {}
        for method in ("rrf", "prefix_dense"):
            for mode in ("hybrid", "generative", "dense"):
                variant = _variant(index, method=method, batch_size=2, precision=precision)
                out[method, mode] = variant.search_arrays([*QUERIES, LONG], 8, mode=mode)
        return out, _variant(index, batch_size=2, precision=precision).tune(dev, dev_qrels)["candidates"]

    shared, shared_tune = run()
    monkeypatch.setattr(genir.semantic, "shares_query_pass", lambda *_: False)
    unshared, unshared_tune = run()
    for key, want in unshared.items():
        np.testing.assert_array_equal(shared[key].doc_idx, want.doc_idx, err_msg=str(key))
        # the decoder reads bit-identical memories (generative scores equal); dense and fused scores within atol
        np.testing.assert_allclose(shared[key].scores, want.scores, rtol=0, atol=atol, err_msg=str(key))
        assert shared[key].path == want.path
    assert shared_tune.keys() == unshared_tune.keys()
    assert all(shared_tune[name] == pytest.approx(unshared_tune[name], abs=1e-6) for name in shared_tune)


def test_shared_embeddings_equal_the_embedders_and_a_long_query_falls_back(index, monkeypatch):
    queries = [*QUERIES, LONG]
    encoder = index.semantic.retriever.model.encoder
    want = index.embedder.encode(queries)
    sent: list[list[str]] = []
    real = index.embedder.encode
    monkeypatch.setattr(index.embedder, "encode", lambda texts, **kw: sent.append(list(texts)) or real(texts, **kw))
    emb, memories = index.semantic.encode_queries(queries, index.embedder, batch_size=2)
    assert sent == [[LONG]]  # only the query that filled the 64-token limit went to the embedder
    assert emb.shape == want.shape and emb.dtype == np.float32
    assert np.all(np.sum(emb * want, axis=1) >= 0.9999)
    np.testing.assert_allclose(emb[3], want[3], atol=1e-6)
    assert [len(mask) for _, mask in memories] == [2, 2]
    for b, (memory, mask) in enumerate(memories):  # what the decoder would have encoded itself
        again, again_mask = encoder(queries[2 * b : 2 * b + 2])
        assert bool((again == memory).all()) and bool((again_mask == mask).all())
    truncated = index.embedder.pool(*memories[1])[1]  # LONG pooled from its first 64 tokens: another vector
    assert float(truncated @ want[3]) < 0.999


def test_hybrid_search_runs_minilm_once_per_decode_batch(index, passes):
    for method in ("rrf", "prefix_dense", "gated"):
        passes.clear()
        _variant(index, method=method, batch_size=2).search_arrays(QUERIES, 5, mode="hybrid")
        assert passes == [2, 1], method  # before: the embedder's [3] besides, and [2, 1] again per GDR level
    passes.clear()
    with collect() as seconds:
        _variant(index).search_arrays(QUERIES[:1], 5, mode="hybrid")
    assert passes == [1] and "encode" in seconds and "encode_memory" not in seconds  # the shared pass is "encode"
    passes.clear()
    queries, qrels = _train_split()
    _variant(index, batch_size=1).tune(queries, qrels)  # generative + every GDR level read one pass per batch
    assert passes == [1, 1]


def test_no_sharing_when_the_passes_would_differ(index, monkeypatch):
    retriever = index.semantic.retriever
    assert shares_query_pass(index.embedder, retriever)
    other = "bf16" if retriever.model.encoder.precision == "fp32" else "fp32"
    monkeypatch.setattr(index.embedder, "precision", other)
    assert not shares_query_pass(index.embedder, retriever)


def test_an_index_with_trainable_encoder_layers_runs_two_passes(tmp_path):
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, model=ModelConfig(trainable_encoder_layers=1),
                              train=dataclasses.replace(cfg.train, max_steps=2))
    idx = GenerativeIndex.build(synthetic_corpus(3), cfg, device="cpu", progress=False)
    assert not shares_query_pass(idx.embedder, idx.semantic.retriever)  # its top layer is fine-tuned: other states
    calls, _ = _count_passes(idx)
    with collect() as seconds:
        idx.search_arrays(QUERIES[:2], 5, mode="hybrid")
    assert sorted(calls) == [2, 2] and "encode_memory" in seconds  # the embedder's pass and the encoder's


def _module(name: str, **attrs):
    return type(name, (), attrs)()


def test_mean_pooled_accepts_only_transformer_mean_pooling_and_normalize():
    assert mean_pooled(list(load_model("all-MiniLM-L6-v2", "cpu")))
    t, norm = _module("Transformer"), _module("Normalize")
    assert mean_pooled([t, _module("Pooling", pooling_mode="mean")])
    assert mean_pooled([t, _module("Pooling", get_pooling_mode_str=staticmethod(lambda: "mean")), norm])  # sentence-transformers < 6
    for pool in ("cls", "max", ("mean", "max"), "weightedmean"):
        assert not mean_pooled([t, _module("Pooling", pooling_mode=pool), norm]), pool
    assert not mean_pooled([t, _module("Pooling", pooling_mode="mean"), _module("Dense"), norm])
    assert not mean_pooled([_module("Transformer", do_lower_case=True), _module("Pooling", pooling_mode="mean")])
