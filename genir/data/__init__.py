"""Dataset loaders and the shared Corpus / Queries / Qrels / Sequences representation."""
from genir.data.types import Corpus, Qrels, Queries, Sequences

__all__ = ["Corpus", "Queries", "Qrels", "Sequences"]
