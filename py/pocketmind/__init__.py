"""pocketmind: small language models that run inside a web page (llama.cpp in WebAssembly, glue in Python)."""
from .engine import Context, Model, PocketmindError

__all__ = ["Context", "Model", "PocketmindError"]
__version__ = "0.1.0"
