"""genir: generative retrieval and recommendation over semantic IDs."""

__version__ = "0.1.0"
