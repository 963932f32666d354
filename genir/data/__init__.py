"""Dataset loaders and the shared Corpus / Queries / Qrels / Sequences representation."""
from genir.data.beir import BeirDataset, available_splits, load_beir
from genir.data.errors import DataFormatError
from genir.data.split import dev_split, resolve_split
from genir.data.types import Corpus, Qrels, Queries, Sequences

__all__ = ["BeirDataset", "Corpus", "DataFormatError", "Qrels", "Queries", "Sequences", "available_splits",
           "dev_split", "load_beir", "resolve_split"]
