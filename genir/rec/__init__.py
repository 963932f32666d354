"""Sequential recommendation: leave-one-out protocol, popularity and SASRec baselines, and the TIGER-style
generative recommender (semantic IDs + shared IdDecoder + trie-constrained beam search).

Entry point: ``genir.rec.recommender.Recommender`` (build / save / load / recommend / evaluate / add_items), which
composes the generative layer (``genir.rec.generative``: item vectors -> item IDs -> TIGER model) with the
baselines beside it (``genir.rec.sasrec``, ``genir.rec.popular``) and serves the fusion of the generative layer with
SASRec (``genir.rec.hybrid``); ``genir.rec.reuse`` rebuilds one model from a saved index; ``genir.rec.commands``
holds the functions the CLI calls.
"""
