"""An independent numpy BERT sentence embedder: the yardstick for the GGUFs that wasm/convert_bert.py writes.

It follows the published definitions, not llama.cpp: Hugging Face's BertTokenizer (basic tokenization: clean the
text, space out CJK characters, lowercase, strip accents, split off punctuation; then greedy longest-match-first
WordPiece), and BertModel's forward pass in float64 (embeddings + LayerNorm, post-norm blocks with exact erf GELU),
then sentence-transformers' mean pooling and L2 normalisation. The weights come straight from the safetensors
(read with the converter's 15-line reader, which only maps bytes to arrays; names and layout are interpreted
here on their own).
"""
from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path

import numpy as np

from convert_bert import read_safetensors


class WordPiece:
    """BertTokenizer(do_lower_case=True) from vocab.txt: text -> ids with [CLS] ... [SEP]."""

    def __init__(self, vocab_file: Path, max_chars_per_word: int = 100):
        words = vocab_file.read_text(encoding="utf-8").splitlines()
        self.ids = {w: i for i, w in enumerate(words)}
        self.max_chars_per_word = max_chars_per_word

    @staticmethod
    def _is_punctuation(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True  # BERT counts every non-alphanumeric ASCII character as punctuation
        return unicodedata.category(ch).startswith("P")

    @staticmethod
    def _is_cjk(cp: int) -> bool:
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
                or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
                or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    def _clean(self, text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                out.append(" ")
            elif unicodedata.category(ch).startswith("C"):
                continue
            elif self._is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        return "".join(out)

    def words(self, text: str) -> list[str]:
        words = []
        for token in self._clean(text).split():
            token = unicodedata.normalize("NFD", token.lower())
            token = "".join(ch for ch in token if unicodedata.category(ch) != "Mn")
            current = ""
            for ch in token:
                if self._is_punctuation(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def _pieces(self, word: str) -> list[int]:
        if len(word) > self.max_chars_per_word:
            return [self.ids["[UNK]"]]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    pieces.append(self.ids[piece])
                    break
                end -= 1
            if end == start:
                return [self.ids["[UNK]"]]
            start = end
        return pieces

    def encode(self, text: str, max_len: int = 512) -> list[int]:
        body = [i for w in self.words(text) for i in self._pieces(w)]
        return [self.ids["[CLS]"], *body[:max_len - 2], self.ids["[SEP]"]]


class BertEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings from a BertModel's safetensors and config.json."""

    def __init__(self, model_dir: Path):
        self.config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        raw = read_safetensors(model_dir / "model.safetensors")
        self.w = {k.removeprefix("bert."): np.asarray(v, dtype=np.float64) for k, v in raw.items()}
        self.tokenizer = WordPiece(model_dir / "vocab.txt")
        self.max_len = self.config["max_position_embeddings"]

    def _layer_norm(self, x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        y = (x - mean) / np.sqrt(var + self.config["layer_norm_eps"])
        return y * self.w[prefix + ".weight"] + self.w[prefix + ".bias"]

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self.w[prefix + ".weight"].T + self.w[prefix + ".bias"]

    def token_states(self, ids: list[int]) -> np.ndarray:
        w, n = self.w, len(ids)
        h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
            + w["embeddings.token_type_embeddings.weight"][0]
        h = self._layer_norm(h, "embeddings.LayerNorm")
        n_head = self.config["num_attention_heads"]
        d_head = h.shape[1] // n_head
        erf = np.vectorize(math.erf)
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (self._linear(h, p + f"attention.self.{m}").reshape(n, n_head, d_head).transpose(1, 0, 2)
                       for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(d_head)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attn = (scores / scores.sum(-1, keepdims=True)) @ v
            attn = attn.transpose(1, 0, 2).reshape(n, n_head * d_head)
            h = self._layer_norm(h + self._linear(attn, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            up = self._linear(h, p + "intermediate.dense")
            up = 0.5 * up * (1.0 + erf(up / math.sqrt(2.0)))
            h = self._layer_norm(h + self._linear(up, p + "output.dense"), p + "output.LayerNorm")
        return h

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        pooled = self.token_states(ids).mean(0)
        return (pooled / np.linalg.norm(pooled)).astype(np.float32)

    def embed(self, text: str) -> np.ndarray:
        return self.embed_ids(self.tokenizer.encode(text, self.max_len))
