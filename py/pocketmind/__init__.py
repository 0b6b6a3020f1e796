"""pocketmind: small language models that run inside a web page (llama.cpp in WebAssembly, glue in Python)."""
from .engine import Adapter, Context, Model, PocketmindError
from .labels import LabelScores, score_labels

__all__ = ["Adapter", "Context", "LabelScores", "Model", "PocketmindError", "score_labels"]
__version__ = "0.1.0"
