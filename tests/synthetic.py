"""Seeded synthetic corpora shared by the index tests."""
import numpy as np

from genir.data.types import Corpus

TOPICS = {
    "astronomy": "telescope galaxy star orbit planet nebula",
    "cooking": "recipe oven flour butter sugar bake",
    "finance": "stock market bond interest rate inflation",
    "medicine": "patient vaccine dose clinical trial virus",
}


def synthetic_corpus(per_topic: int = 12, seed: int = 0) -> Corpus:
    rng = np.random.default_rng(seed)
    ids, titles, texts = [], [], []
    for topic, words in TOPICS.items():
        vocab = words.split()
        for j in range(per_topic):
            ids.append(f"{topic}-{j}")
            titles.append(f"{topic} note {j}")
            texts.append(" ".join(rng.choice(vocab, size=12)) + f" item{j}{topic}")
    return Corpus.from_records(ids, titles, texts)
