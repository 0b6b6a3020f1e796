"""Search by meaning: embed texts with a GGUF embedding model (embed), cut documents into overlapping paragraph
chunks (chunk), extract text from files (extract) and rank chunks by cosine similarity (index)."""


class SearchError(ValueError):
    """A document, index or query that cannot be used, with a message a person can act on."""
