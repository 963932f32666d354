"""Sequential recommendation: leave-one-out protocol, popularity and SASRec baselines, and the TIGER-style
generative recommender (semantic IDs + shared IdDecoder + trie-constrained beam search).

Entry point: ``genir.rec.recommender.Recommender`` (build / save / load / recommend / evaluate / add_items);
``genir.rec.commands`` holds the functions the CLI calls.
"""
