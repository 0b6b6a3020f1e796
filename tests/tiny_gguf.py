"""Tiny random-weight GGUF models written with the `gguf` package, for tests that must run in seconds.

A 2-layer, 64-wide llama with a byte-fallback SentencePiece-style vocabulary (every UTF-8 byte is a token, so
any text tokenizes and random generations produce split UTF-8 characters), ChatML control tokens and a chat
template. Quantized types are produced by gguf's own quantizer, bit-exact with llama.cpp's reference; the K-quants
(Q4_K, Q5_K, Q6_K), which gguf can only dequantize, are random blocks (see random_k_blocks) and need n_embd and n_ff
that are multiples of 256.
"""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

QUANTS = {
    "F32": gguf.GGMLQuantizationType.F32,
    "F16": gguf.GGMLQuantizationType.F16,
    "Q8_0": gguf.GGMLQuantizationType.Q8_0,
    "Q4_0": gguf.GGMLQuantizationType.Q4_0,
    "Q4_1": gguf.GGMLQuantizationType.Q4_1,
    "Q5_0": gguf.GGMLQuantizationType.Q5_0,
    "Q5_1": gguf.GGMLQuantizationType.Q5_1,
    "Q4_K": gguf.GGMLQuantizationType.Q4_K,
    "Q5_K": gguf.GGMLQuantizationType.Q5_K,
    "Q6_K": gguf.GGMLQuantizationType.Q6_K,
}
K_QUANTS = ("Q4_K", "Q5_K", "Q6_K")
# llama_ftype: the K-quants as their _S mixes (informational: every tensor here is of the one type)
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q4_K": 14, "Q5_K": 16,
              "Q6_K": 18}

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = ["the", "a", "and", "of", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as",
         "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not",
         "what", "all", "were", "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she",
         "do", "how", "their", "if", "will", "up", "other", "about", "out", "many", "then", "them", "these", "so"]


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and types: <unk> <s> </s>, ChatML controls, 256 byte tokens, then whole words."""
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL, T.CONTROL, T.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [T.BYTE] * 256
    # SentencePiece merges pairs of known pieces, so every prefix of a word must be a piece too
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for word in WORDS:
        pieces += [p for p in ("\u2581" + word[:i] for i in range(1, len(word) + 1)) if p not in pieces]
    tokens += pieces
    types += [T.NORMAL] * len(pieces)
    scores = [0.0] * (5 + 256) + [float(len(p)) for p in pieces]  # longer pieces win
    return tokens, scores, [int(t) for t in types]


def random_k_blocks(rows: int, cols: int, quant: str, rng: np.random.Generator) -> np.ndarray:
    """A (rows, cols) matrix of a K-quant type as random blocks: random bytes for the packed values and scales,
    with the fp16 super-block scales set so that the weights have mean ~0 and standard deviation 1/sqrt(cols),
    like write_tiny_llama's other matrices. Every byte pattern is a valid block (gguf dequantizes them)."""
    qtype = QUANTS[quant]
    block, size = gguf.constants.GGML_QUANT_SIZES[qtype]
    assert cols % block == 0, f"{quant} needs rows of a multiple of {block} values, not {cols}"
    blocks = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    # where the fp16 scales lie, and the offset (dmin) that centres the weights: (d, dmin) at bytes 0 and 2 of Q4_K
    # and Q5_K (w = d*sc*q - dmin*m, sc, m uniform in 0..63, q in 0..15 or 0..31); d at byte 208 of Q6_K
    d_at, dmin_ratio = {"Q4_K": (0, 7.5), "Q5_K": (0, 15.5), "Q6_K": (208, None)}[quant]

    def set_scales(d: float) -> None:
        blocks[..., d_at:d_at + 2] = np.float16(d).reshape(1).view(np.uint8)
        if dmin_ratio is not None:
            blocks[..., 2:4] = np.float16(d * dmin_ratio).reshape(1).view(np.uint8)

    set_scales(1.0)
    values = gguf.quants.dequantize(blocks.reshape(rows, -1), qtype)
    set_scales(1.0 / (np.sqrt(cols) * values.std()))
    return blocks.reshape(rows, -1)


def write_parrot_llama(path: str | Path, text: str, quant: str = "F32") -> Path:
    """A tiny llama whose greedy answer is `text` over and over, whatever it is asked: `text` is one more token,
    every token embeds to the same positive vector, the blocks add nothing (zero output projections), and only
    that token's output row is non-zero, so it wins every argmax. For tests of how answers are shown."""
    return write_tiny_llama(path, quant, extra_tokens=[text], parrot=True)


def write_tiny_llama(path: str | Path, quant: str = "F16", seed: int = 0, n_layer: int = 2, n_embd: int = 64,
                     n_head: int = 4, n_head_kv: int = 2, n_ff: int = 128, n_ctx: int = 256,
                     chat_template: str | None = CHATML_TEMPLATE, extra_tokens: list[str] | None = None,
                     parrot: bool = False, sampling: dict[str, float] | None = None,
                     transform=None) -> Path:
    """sampling: recommended settings written as general.sampling.<name> through gguf's own add_sampling_<name>
    (temp, top_k, top_p, min_p, penalty_repeat, penalty_last_n, ...). transform(name, array) -> array: changes
    tensors before they are written (e.g. a LoRA merged into the weights); the random draws stay the same."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    for extra in extra_tokens or []:
        tokens.append(extra)
        scores.append(0.0)
        types.append(int(gguf.TokenType.USER_DEFINED))
    n_vocab = len(tokens)
    head_dim = n_embd // n_head

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"tiny-llama-{quant.lower()}-s{seed}")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(FILE_TYPES[quant])
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)
    for name, value in (sampling or {}).items():
        getattr(w, f"add_sampling_{name}")(value)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    k_rng = np.random.default_rng(seed + 1_000_003)  # K-quant blocks: the normal draws above stay the same

    def add(name: str, data: np.ndarray, quantize: bool = True) -> None:
        if transform is not None:
            data = transform(name, data)
        if quantize and quant in K_QUANTS:
            w.add_tensor(name, random_k_blocks(*data.shape, quant, k_rng), raw_dtype=QUANTS[quant])
        elif quantize and quant != "F32":
            qtype = QUANTS[quant]
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, data)

    if parrot:  # see write_parrot_llama
        zero = lambda rows, cols: np.zeros((rows, cols), dtype=np.float32)  # noqa: E731
        favoured = np.zeros((n_vocab, n_embd), dtype=np.float32)
        favoured[-1] = 1.0
        matrix_for = {"token_embd": lambda r, c: np.ones((r, c), dtype=np.float32), "output": lambda r, c: favoured,
                      "attn_output": zero, "ffn_down": zero}
    else:
        matrix_for = {}

    def weight(kind: str, rows: int, cols: int) -> np.ndarray:
        return matrix_for.get(kind, matrix)(rows, cols)

    add("token_embd.weight", weight("token_embd", n_vocab, n_embd))
    for i in range(n_layer):
        add(f"blk.{i}.attn_norm.weight", (1 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32), False)
        add(f"blk.{i}.attn_q.weight", matrix(n_head * head_dim, n_embd))
        add(f"blk.{i}.attn_k.weight", matrix(n_head_kv * head_dim, n_embd))
        add(f"blk.{i}.attn_v.weight", matrix(n_head_kv * head_dim, n_embd))
        add(f"blk.{i}.attn_output.weight", weight("attn_output", n_embd, n_head * head_dim))
        add(f"blk.{i}.ffn_norm.weight", (1 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32), False)
        add(f"blk.{i}.ffn_gate.weight", matrix(n_ff, n_embd))
        add(f"blk.{i}.ffn_up.weight", matrix(n_ff, n_embd))
        add(f"blk.{i}.ffn_down.weight", weight("ffn_down", n_embd, n_ff))
    add("output_norm.weight", np.ones(n_embd, dtype=np.float32), False)
    add("output.weight", weight("output", n_vocab, n_embd))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# Shapes (rows = outputs, cols = inputs, numpy's order) of write_tiny_llama's matrices at its default sizes.
TINY_SHAPES = {"attn_q": (64, 64), "attn_k": (32, 64), "attn_v": (32, 64), "attn_output": (64, 64),
               "ffn_gate": (128, 64), "ffn_up": (128, 64), "ffn_down": (64, 128)}


def random_lora(targets: dict[str, tuple[int, int]], rank: int = 4, seed: int = 1,
                size: float = 0.5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """LoRA pairs for base tensors: {"blk.0.attn_q.weight": (rows, cols)} -> {name: (A, B)} with A of shape
    (rank, cols) and B of shape (rows, rank) (numpy's order), so that the update to the weight is B @ A."""
    rng = np.random.default_rng(seed)
    pairs = {}
    for name, (rows, cols) in targets.items():
        a = (rng.standard_normal((rank, cols)) / np.sqrt(cols)).astype(np.float32)
        b = (size * rng.standard_normal((rows, rank)) / np.sqrt(rank)).astype(np.float32)
        pairs[name] = (a, b)
    return pairs


def write_tiny_lora(path: str | Path, pairs: dict[str, tuple[np.ndarray, np.ndarray]], alpha: float = 8.0,
                    architecture: str = "llama", kv: dict[str, object] | None = None, dtype=np.float32) -> Path:
    """A GGUF LoRA adapter as llama.cpp's convert_lora_to_gguf.py writes one: general.type = adapter,
    adapter.type = lora, adapter.lora.alpha, and F32 tensors "<base name>.lora_a" / ".lora_b". gguf reverses numpy's
    dimension order, so A (rank, n_in) is stored with ne = [n_in, rank], as llama.cpp expects. kv: more keys
    (strings, floats, ints), or None as a value to leave a standard key out. dtype: of the tensors as stored."""
    path = Path(path)
    w = gguf.GGUFWriter(str(path), architecture)
    keys: dict[str, object] = {"general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": float(alpha),
                               "general.name": path.stem}
    keys.update(kv or {})
    for key, value in keys.items():
        if value is None:
            continue
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_uint32(key, int(value))
    for name, (a, b) in pairs.items():
        w.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=dtype))
        w.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=dtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def merged(adapters: list[tuple[dict[str, tuple[np.ndarray, np.ndarray]], float, float]]):
    """A write_tiny_llama transform that folds LoRA adapters into the weights: for each (pairs, alpha, scale),
    W + scale * alpha / rank * B @ A (computed in float64, stored as float32)."""
    def transform(name: str, data: np.ndarray) -> np.ndarray:
        total = data.astype(np.float64)
        for pairs, alpha, scale in adapters:
            if name in pairs:
                a, b = pairs[name]
                total = total + scale * alpha / a.shape[0] * (b.astype(np.float64) @ a.astype(np.float64))
        return total.astype(np.float32)

    return transform


if __name__ == "__main__":
    import sys

    for q in sys.argv[2:] or ["F16"]:
        print(write_tiny_llama(Path(sys.argv[1]) / f"tiny-{q.lower()}.gguf", q))
