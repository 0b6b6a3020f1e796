"""Which real model sizes of each family fit the wasm32 heap of our build at Q4_0: measured, not estimated.

For each candidate (a published model's shape: width, layers, heads, FFN width, vocabulary size, tied or not), this
writes a synthetic GGUF of exactly that shape with every big matrix in Q4_0 (random quant blocks; the values do not
matter for memory), loads it into the wasm-st module under Node the way the page does (the file copied into wasm
memory and used in place), makes a context of N_CTX tokens (the chat page's default) and decodes a few tokens.
It prints a Markdown table: the file's size, "fits" or the stage (alloc, load, context, decode) and error where it
failed, and the size of wasm memory at the end. benchmarks/model_fit.cjs is the Node side.

    POCKETMIND_CACHE=... python3 benchmarks/model_fit.py [--only KEY ...] [--n-ctx 2048] [--keep DIR]

It needs free disk and RAM for the largest file (about 4 GB each) and takes about a minute per candidate.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "wasm"), str(REPO / "tests")]

import build as wasm_build  # noqa: E402

Q4_0 = gguf.GGMLQuantizationType.Q4_0
BLOCK_BYTES = 18  # Q4_0: an F16 scale and 32 four-bit values

# (family, model it stands for, arch, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, tied, extra)
CANDIDATES = [
    ("llama", "Llama 3.2 3B", "llama", 3072, 28, 24, 8, 128, 8192, 128256, True, {}),
    ("llama", "Llama 2 7B / WizardLM 7B", "llama", 4096, 32, 32, 32, 128, 11008, 32000, False, {}),
    ("llama", "Mistral 7B", "llama", 4096, 32, 32, 8, 128, 14336, 32768, False, {}),
    ("phi3", "Phi-3 / 3.5 mini (3.8B)", "phi3", 3072, 32, 32, 32, 96, 8192, 32064, False, {}),
    ("gemma2", "Gemma 2 2B", "gemma2", 2304, 26, 8, 4, 256, 9216, 256000, True, {}),
    ("gemma3", "Gemma 3 1B", "gemma3", 1152, 26, 4, 1, 256, 6912, 262144, True, {}),
    ("gemma3", "Gemma 3 4B (text part)", "gemma3", 2560, 34, 8, 4, 256, 10240, 262144, True, {}),
    ("qwen2", "Qwen2.5 3B", "qwen2", 2048, 36, 16, 2, 128, 11008, 151936, True, {}),
    ("qwen2", "Qwen2 7B", "qwen2", 3584, 28, 28, 4, 128, 18944, 152064, False, {}),
    # OpenELM varies heads (12..24) and FFN width (0.5..4 x n_embd) by layer: here their averages, on every layer
    ("openelm", "OpenELM 3B (per-layer widths averaged)", "openelm", 3072, 36, 18, 6, 128, 6912, 32000, True, {}),
    # no published Mixtral-style model is this small; a synthetic one: 8 experts (2 used), 2.6B parameters
    ("moe", "Mixtral-style 8 x 0.3B (synthetic)", "llama", 1536, 16, 12, 4, 128, 4096, 32000, False, {"n_expert": 8}),
]


class Blocks:
    """Q4_0 tensors cut from one random buffer, so that writing a 4 GB file needs only the largest tensor in RAM."""

    def __init__(self, max_bytes: int, seed: int = 0):
        raw = np.random.default_rng(seed).integers(0, 256, size=max_bytes, dtype=np.uint8)
        blocks = raw[: max_bytes // BLOCK_BYTES * BLOCK_BYTES].reshape(-1, BLOCK_BYTES)
        blocks[:, :2] = np.frombuffer(np.float16(0.002).tobytes(), dtype=np.uint8)  # small scales
        self.flat = blocks.reshape(-1)

    def q4(self, *shape: int) -> np.ndarray:
        *outer, cols = shape
        rows = int(np.prod(outer))
        size = rows * cols // 32 * BLOCK_BYTES
        return self.flat[:size].reshape(*outer, cols // 32 * BLOCK_BYTES)


def write_synthetic(path: Path, arch: str, n_embd: int, n_layer: int, n_head: int, n_head_kv: int, head: int,
                    n_ff: int, n_vocab: int, tied: bool, n_expert: int = 0) -> Path:
    largest = max(n_vocab * n_embd, 3 * n_ff * n_embd * max(1, n_expert), n_embd * (n_head + 2 * n_head_kv) * head)
    data = Blocks(largest // 32 * BLOCK_BYTES + BLOCK_BYTES)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"synthetic-{arch}")
    w.add_context_length(8192)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_rope_dimension_count(head)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(2)  # MOSTLY_Q4_0
    if n_expert:
        w.add_expert_count(n_expert)
        w.add_expert_used_count(2)
    if arch in ("gemma2", "gemma3"):
        w.add_sliding_window(4096 if arch == "gemma2" else 1024)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(n_vocab - len(tokens))]
    T = gguf.TokenType
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([int(T.UNKNOWN), int(T.CONTROL), int(T.CONTROL)] + [int(T.BYTE)] * 256
                      + [int(T.NORMAL)] * (n_vocab - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def q4(name: str, *shape: int) -> None:
        w.add_tensor(name, data.q4(*shape), raw_dtype=Q4_0)

    def ones(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    q4("token_embd.weight", n_vocab, n_embd)
    for i in range(n_layer):
        b = f"blk.{i}"
        ones(f"{b}.attn_norm.weight", n_embd)
        if arch in ("phi3", "openelm"):
            q4(f"{b}.attn_qkv.weight", (n_head + 2 * n_head_kv) * head, n_embd)
        else:
            q4(f"{b}.attn_q.weight", n_head * head, n_embd)
            q4(f"{b}.attn_k.weight", n_head_kv * head, n_embd)
            q4(f"{b}.attn_v.weight", n_head_kv * head, n_embd)
        if arch == "qwen2":
            for part, n in (("q", n_head * head), ("k", n_head_kv * head), ("v", n_head_kv * head)):
                w.add_tensor(f"{b}.attn_{part}.bias", np.zeros(n, dtype=np.float32))
        q4(f"{b}.attn_output.weight", n_embd, n_head * head)
        if arch in ("gemma3", "openelm"):
            ones(f"{b}.attn_q_norm.weight", head)
            ones(f"{b}.attn_k_norm.weight", head)
        if arch in ("gemma2", "gemma3"):
            ones(f"{b}.post_attention_norm.weight", n_embd)
            ones(f"{b}.post_ffw_norm.weight", n_embd)
        ones(f"{b}.ffn_norm.weight", n_embd)
        if n_expert:
            w.add_tensor(f"{b}.ffn_gate_inp.weight", np.zeros((n_expert, n_embd), dtype=np.float32))
            q4(f"{b}.ffn_gate_exps.weight", n_expert, n_ff, n_embd)
            q4(f"{b}.ffn_up_exps.weight", n_expert, n_ff, n_embd)
            q4(f"{b}.ffn_down_exps.weight", n_expert, n_embd, n_ff)
        elif arch == "phi3":
            q4(f"{b}.ffn_up.weight", 2 * n_ff, n_embd)
            q4(f"{b}.ffn_down.weight", n_embd, n_ff)
        else:
            q4(f"{b}.ffn_gate.weight", n_ff, n_embd)
            q4(f"{b}.ffn_up.weight", n_ff, n_embd)
            q4(f"{b}.ffn_down.weight", n_embd, n_ff)
    ones("output_norm.weight", n_embd)
    if not tied:
        q4("output.weight", n_vocab, n_embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def try_in_wasm(model: Path, n_ctx: int) -> tuple[str, float]:
    out = wasm_build.build("wasm-st")
    module = next(p for p in out if p.name.endswith(".js"))
    t = time.perf_counter()
    proc = subprocess.run(["node", "--no-experimental-fetch", str(REPO / "benchmarks" / "model_fit.cjs"), str(module),
                           str(model), str(n_ctx)], capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = [line for line in proc.stderr.splitlines() if line.strip()][-3:]
        return f"crashed (exit {proc.returncode}): {' | '.join(tail)[:300]}", seconds
    heap = f"heap {result.get('heap_bytes', 0) / 2**30:.2f} GiB"
    if result["ok"]:
        return f"fits: loads, context, 2 tokens decoded ({heap})", seconds
    return f"fails at {result['stage']}: {result.get('error', '')[:200]} ({heap})", seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="family keys or model names to try")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--keep", type=Path, help="write the GGUFs here and keep them")
    args = parser.parse_args()
    print("| family | shape of | file (GiB) | n_ctx | result in wasm-st under Node | seconds |")
    print("|---|---|---|---|---|---|")
    for family, name, arch, *shape, extra in CANDIDATES:
        if args.only and family not in args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            path = write_synthetic(folder / f"{name.split(' (')[0].replace(' ', '-').replace('/', '')}.gguf", arch,
                                   *shape, **extra)
            size = path.stat().st_size / 2**30
            result, seconds = try_in_wasm(path, args.n_ctx)
            print(f"| {family} | {name} | {size:.2f} | {args.n_ctx} | {result} | {seconds:.0f} |", flush=True)
            if not args.keep:
                path.unlink()


if __name__ == "__main__":
    main()
