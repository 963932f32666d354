"""Reading recommendation indexes written before the per-stage layout (manifests without ``"layout"``).

That layout kept everything in the version folder itself: items.parquet (item_id, text and the item's full ID
in a ``codes`` column), sequences.parquet, popular.safetensors, sasrec.safetensors (weights only: the model was
rebuilt from the config), and with the generative mode tiger.safetensors, codec/, trie/ and
item_vectors.safetensors, while the manifest held the decoder vocabulary (``vocab_sizes``), the vector source
(``item_source``) and ``trained_items``. Loaded here into today's objects; saving such an index again writes
the current layout (genir.rec.recommender).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from safetensors.torch import load_file

from genir.config import RecConfig
from genir.ids import load_codec
from genir.rec.generative import GenerativeRecLayer, ids_config
from genir.rec.items import ItemVectors
from genir.rec.popular import PopularRecommender
from genir.rec.sasrec import SASRec
from genir.trie import IdTrie


def load_layout1(folder: Path, manifest: dict, cfg: RecConfig, items: pa.Table,
                 ) -> tuple[GenerativeRecLayer | None, SASRec | None, PopularRecommender | None]:
    """(generative layer, SASRec, popularity) of the old-layout version ``folder``, each None when absent;
    ``cfg`` is the manifest's config (the only record of how the models were shaped), ``items`` its items.parquet."""
    folder = Path(folder)
    popular = PopularRecommender.load(folder) if (folder / "popular.safetensors").exists() else None
    sasrec = None
    if (folder / "sasrec.safetensors").exists():
        state = load_file(str(folder / "sasrec.safetensors"))
        # no config file then: the item count is the embedding table's rows less the padding row
        sasrec = SASRec.from_config(state["item_emb.weight"].shape[0] - 1, cfg)
        sasrec.load_state_dict(state)
        sasrec.eval()
    generative = None
    if (folder / "tiger.safetensors").exists():
        codes = np.asarray(items.column("codes").to_pylist(), dtype=np.int64)
        generative = GenerativeRecLayer(
            cfg, ItemVectors.load(folder / "item_vectors.safetensors", source=manifest["item_source"]),
            load_codec(folder / "codec"), codes, IdTrie.load(folder / "trie"), vocab_sizes=manifest["vocab_sizes"],
            ids=ids_config(cfg),
            # written before the field: every item counts as trained (such models had no item embeddings)
            trained_items=manifest.get("trained_items", len(codes)))
        generative.model = generative.new_model(load_file(str(folder / "tiger.safetensors")))
    return generative, sasrec, popular
