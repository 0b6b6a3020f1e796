"""Convert a Hugging Face BERT sentence-embedding model (safetensors + WordPiece vocab.txt) to a llama.cpp GGUF.

Written for all-MiniLM-L6-v2 (see deps.minilm_gguf), but it reads every size from config.json, so any plain
`BertModel` with absolute positions and mean pooling converts the same way. Only numpy and the `gguf` package are
used: the safetensors header is JSON and the tensors are raw little-endian arrays, read here directly.

What llama.cpp's `bert` architecture expects (read from the pinned source: src/models/bert.cpp, src/llama-vocab.cpp):
- tensors token_embd, token_types, position_embd, token_embd_norm, and per block attn_q/k/v, attn_output,
  attn_output_norm, ffn_up, ffn_down, layer_output_norm (weights and biases); the pooler is not used;
- tokenizer model "bert" (WordPiece): a word-initial piece is stored with a leading U+2581 and a continuation piece
  ("##ing") without its "##"; special tokens stay as they are. CLS is the BOS token, SEP is appended;
- lowercase/strip-accents normalisation (llama.cpp's defaults, written explicitly), non-causal attention, the pooling
  type, and the number of token types.

    python wasm/convert_bert.py MODEL_DIR OUT.gguf [F16|Q8_0|F32]
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import gguf
import numpy as np

QUANTS = {"F32": gguf.GGMLQuantizationType.F32, "F16": gguf.GGMLQuantizationType.F16,
          "Q8_0": gguf.GGMLQuantizationType.Q8_0}
FILE_TYPES = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
              "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}

# Hugging Face name (after the "embeddings." / "encoder.layer.N." prefix) -> GGUF name
EMBEDDING_TENSORS = {
    "word_embeddings.weight": "token_embd.weight",
    "token_type_embeddings.weight": "token_types.weight",
    "position_embeddings.weight": "position_embd.weight",
    "LayerNorm.weight": "token_embd_norm.weight",
    "LayerNorm.bias": "token_embd_norm.bias",
}
BLOCK_TENSORS = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
# kept in F32 whatever the file type: llama.cpp adds a row of token_types to F32 activations and reads positions
# with get_rows; both are small (what llama.cpp's own converter does too)
ALWAYS_F32 = {"token_types.weight", "position_embd.weight"}

POOLING = {"pooling_mode_mean_tokens": gguf.PoolingType.MEAN, "pooling_mode_cls_token": gguf.PoolingType.CLS}


class ConversionError(ValueError):
    pass


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as a numpy array (a read-only view on the file's bytes)."""
    data = Path(path).read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_size])
    body = memoryview(data)[8 + header_size:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ConversionError(f"{name}: safetensors dtype {info['dtype']} is not supported")
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=np.dtype(dtype).newbyteorder("<"))
        tensors[name] = array.reshape(info["shape"])
    return tensors


def gguf_tensor_names(hf_names: list[str], n_layer: int) -> dict[str, str]:
    """HF tensor name -> GGUF name for the tensors llama.cpp uses; the pooler and position_ids are left out."""
    mapping = {}
    for name in hf_names:
        plain = name.removeprefix("bert.")
        if plain.startswith("embeddings.") and plain[len("embeddings."):] in EMBEDDING_TENSORS:
            mapping[name] = EMBEDDING_TENSORS[plain[len("embeddings."):]]
        elif plain.startswith("encoder.layer."):
            index, _, rest = plain[len("encoder.layer."):].partition(".")
            module, _, kind = rest.rpartition(".")
            if module in BLOCK_TENSORS and kind in ("weight", "bias"):
                mapping[name] = f"blk.{int(index)}.{BLOCK_TENSORS[module]}.{kind}"
    expected = len(EMBEDDING_TENSORS) + 2 * len(BLOCK_TENSORS) * n_layer
    if len(mapping) != expected:
        raise ConversionError(f"found {len(mapping)} of the {expected} BERT tensors; is this a plain BertModel?")
    return mapping


def wordpiece_vocabulary(model_dir: Path) -> tuple[list[str], list[int], dict[str, int]]:
    """(tokens as llama.cpp's WordPiece tokenizer looks them up, their types, special token ids by role)."""
    words = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if words and words[-1] == "":
        words.pop()  # the file ends with a newline
    config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    roles = {role: config.get(f"{role}_token") for role in ("cls", "sep", "unk", "pad", "mask")}
    index = {w: i for i, w in enumerate(words)}
    missing = [t for t in roles.values() if t not in index]
    if missing:
        raise ConversionError(f"special tokens {missing} are not in vocab.txt")
    special = set(roles.values())
    tokens, types = [], []
    for word in words:
        if word in special:
            tokens.append(word)
            types.append(int(gguf.TokenType.CONTROL))
        else:
            # a continuation piece matches inside a word; a word-initial piece after llama.cpp's "phantom space"
            tokens.append(word[2:] if word.startswith("##") else "\u2581" + word)
            types.append(int(gguf.TokenType.NORMAL))
    return tokens, types, {role: index[t] for role, t in roles.items()}


def pooling_type(model_dir: Path) -> gguf.PoolingType:
    config_file = model_dir / "1_Pooling" / "config.json"
    if not config_file.exists():
        return gguf.PoolingType.MEAN  # sentence-transformers' default for a bare BERT
    config = json.loads(config_file.read_text(encoding="utf-8"))
    chosen = [POOLING[k] for k in POOLING if config.get(k)]
    others = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k not in POOLING]
    if len(chosen) != 1 or others:
        raise ConversionError(f"unsupported pooling configuration {config}")
    return chosen[0]


def convert(model_dir: str | Path, out: str | Path, quant: str = "F16", name: str | None = None) -> Path:
    """Write the GGUF for the BERT model in model_dir to `out` with weight matrices in `quant`."""
    model_dir, out = Path(model_dir), Path(out)
    if quant not in QUANTS:
        raise ConversionError(f"quant {quant!r}: choose one of {sorted(QUANTS)}")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError("only BERT models with absolute position embeddings are supported")
    if config.get("hidden_act") != "gelu":
        raise ConversionError(f"activation {config.get('hidden_act')!r}: llama.cpp's bert uses gelu")
    n_layer = config["num_hidden_layers"]
    tensors = read_safetensors(model_dir / "model.safetensors")
    names = gguf_tensor_names(list(tensors), n_layer)
    tokens, types, special = wordpiece_vocabulary(model_dir)
    if len(tokens) != tensors[next(k for k, v in names.items() if v == "token_embd.weight")].shape[0]:
        raise ConversionError("vocab.txt and the token embedding disagree on the vocabulary size")

    w = gguf.GGUFWriter(str(out), "bert")
    w.add_name(name or model_dir.name)
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_block_count(n_layer)
    w.add_head_count(config["num_attention_heads"])
    w.add_layer_norm_eps(config["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(pooling_type(model_dir))
    w.add_file_type(FILE_TYPES[quant])
    w.add_tokenizer_model("bert")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_type_count(config.get("type_vocab_size", 2))
    w.add_bos_token_id(special["cls"])  # llama.cpp's WordPiece tokenizer puts the BOS first: CLS
    w.add_sep_token_id(special["sep"])
    w.add_unk_token_id(special["unk"])
    w.add_pad_token_id(special["pad"])
    w.add_mask_token_id(special["mask"])
    w.add_add_bos_token(True)
    w.add_add_sep_token(True)
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    lowercase = bool(tokenizer_config.get("do_lower_case", True))
    # llama.cpp reads these two keys (llama-vocab.cpp); gguf 0.19 has no constant for them
    w.add_bool("tokenizer.ggml.normalizer.lowercase", lowercase)
    # Hugging Face strips accents exactly when it lowercases unless strip_accents says otherwise
    strip = tokenizer_config.get("strip_accents")
    w.add_bool("tokenizer.ggml.normalizer.strip_accents", lowercase if strip is None else bool(strip))

    for hf_name, gguf_name in sorted(names.items(), key=lambda kv: _tensor_order(kv[1])):
        data = np.ascontiguousarray(tensors[hf_name], dtype=np.float32)
        # vectors (biases, norms) and the always-F32 tables stay F32; weight matrices take the chosen type
        qtype = QUANTS[quant] if data.ndim == 2 and gguf_name not in ALWAYS_F32 else QUANTS["F32"]
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gguf_name, data)
        else:
            w.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def _tensor_order(name: str) -> tuple[int, str]:
    """Embeddings first, then blocks in numeric order (blk.10 after blk.9)."""
    if name.startswith("blk."):
        return int(name.split(".")[1]) + 1, name
    return 0, name


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    convert(args[0], args[1], *(args[2:] or ["F16"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
