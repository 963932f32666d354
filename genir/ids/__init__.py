"""Semantic IDs: codecs (rqvae, rqkmeans, hkmeans, atomic) behind one interface, plus the collision suffix."""
from genir.ids.base import SCHEMES, CodecStats, SemanticIdCodec, load_codec, make_codec
from genir.ids.suffix import add_suffix, collision_groups

__all__ = ["SCHEMES", "CodecStats", "SemanticIdCodec", "add_suffix", "collision_groups", "load_codec", "make_codec"]
