"""Tiny random-weight GGUF models of each model family the project names, written with the `gguf` package.

Every model has 2 layers, n_embd 64 and a small vocabulary (see below) with the family's own control tokens added
(so the chat markup of the family's template becomes single control tokens, as in the real models). What is the
family's own: the GGUF architecture, the tensors llama.cpp's loader asks for (as src/models/<arch>.cpp names
them: fused or separate QKV, q/k norms, post-norms, experts), the hyperparameters that change the graph (per-layer
head counts, sliding windows, soft-capping, rope bases and factors), BOS/EOS/EOT, and a Jinja chat template in the
family's format (written for these tests in the format each family documents).

What is not the family's own: the vocabulary. Llama 3 and Qwen2 get a small byte-level BPE vocabulary (the 256
byte characters and merges for a few dozen words) read with their own pre-tokenizers ("llama-bpe", "qwen2"), the
others the small SentencePiece one of tiny_gguf.py. The sizes are tiny, and some values are chosen so the tiny
model exercises the code path (a sliding window of 8 tokens, soft-caps small enough to bend random logits).

    python tests/family_models.py OUT_DIR [QUANT]     writes every family to OUT_DIR/<key>-<quant>.gguf
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from tiny_gguf import FILE_TYPES, QUANTS, WORDS, vocabulary

N_EMBD = 64
N_LAYER = 2
N_CTX = 512

# One chat for every family: a system prompt, a whole exchange, then the question to answer.
CHAT = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "the word and the other one"},
    {"role": "assistant", "content": "it was not said"},
    {"role": "user", "content": "what was said"},
]
CHAT_NO_SYSTEM = CHAT[1:]

# ---- chat templates (HF Jinja, rendered by py/pocketmind/chat_template.py) ----

LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Mistral's instruct format: [INST] ... [/INST] around user turns, EOS after answers; the system prompt is put in
# front of the first user turn (Mistral has no system role).
MISTRAL_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set loop_messages = messages %}{% endif %}"
    "{{ bos_token }}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{% if loop.first %}{{ '[INST] ' + system + message['content'] + ' [/INST]' }}"
    "{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)

# WizardLM 1.x / Vicuna v1.1: plain-text roles, no markup tokens at all.
VICUNA_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}"
    "{% set system = 'A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user\\'s questions.' %}{% endif %}"
    "{{ bos_token + system }}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}{{ ' USER: ' + message['content'] }}"
    "{% else %}{{ ' ASSISTANT: ' + message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}"
)

PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# Gemma 2 has no system role and says so.
GEMMA2_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Gemma 3 puts the system prompt at the start of the first user turn.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Qwen2 instruct: ChatML with a default system prompt.
QWEN2_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# OpenELM's instruct models ship no chat template; they use the Llama 2 tokenizer, so the Llama 2 chat format.
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class Family:
    key: str
    name: str  # the models it stands for
    arch: str  # general.architecture
    template: str
    specials: tuple[str, ...]  # control tokens added after tiny_gguf's vocabulary
    bos: str
    eos: str
    expected_prompt: str  # what the glue must render for `messages` (written out by hand)
    messages: list = field(default_factory=lambda: CHAT)
    eot: str | None = None
    add_bos: bool = True
    notes: str = ""  # what the tiny model has of the family's own, for docs/models.md
    bpe: str | None = None  # tokenizer.ggml.pre of a byte-level BPE vocabulary; None: the SentencePiece one
    seed: int = 0  # added to write_family's seed (qwen2's seed 0 model answers one token 32 times)


FAMILIES: dict[str, Family] = {f.key: f for f in [
    Family("llama3", "Llama 3.x (3.2 1B/3B instruct)", "llama", LLAMA3_TEMPLATE,
           ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
           "<|begin_of_text|>", "<|end_of_text|>", eot="<|eot_id|>",
           expected_prompt=("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are brief.<|eot_id|>"
                            "<|start_header_id|>user<|end_header_id|>\n\nthe word and the other one<|eot_id|>"
                            "<|start_header_id|>assistant<|end_header_id|>\n\nit was not said<|eot_id|>"
                            "<|start_header_id|>user<|end_header_id|>\n\nwhat was said<|eot_id|>"
                            "<|start_header_id|>assistant<|end_header_id|>\n\n"),
           notes="GQA (4 heads, 2 KV), rope base 500000 with a rope_freqs tensor (Llama 3.1+ rope scaling), "
                 "tied embeddings (no output.weight, as 3.2 1B/3B), byte-level BPE with Llama 3's pre-tokenizer",
           bpe="llama-bpe"),
    Family("mistral", "Mistral 7B instruct", "llama", MISTRAL_TEMPLATE, ("[INST]", "[/INST]"), "<s>", "</s>",
           expected_prompt=("<s>[INST] You are brief.\n\nthe word and the other one [/INST]it was not said</s>"
                            "[INST] what was said [/INST]"),
           notes="GQA (4 heads, 2 KV), rope base 1e6, separate output.weight, [INST]/[/INST] as control tokens "
                 "(v0.3 vocabulary)"),
    Family("wizardlm", "WizardLM 1.x (Vicuna format)", "llama", VICUNA_TEMPLATE, (), "<s>", "</s>",
           expected_prompt=("<s>You are brief. USER: the word and the other one ASSISTANT: it was not said</s>"
                            " USER: what was said ASSISTANT:"),
           notes="Llama 2 shape: multi-head attention (4 heads, 4 KV), rope base 10000; a template with no markup "
                 "tokens"),
    Family("phi3", "Phi-3 / Phi-3.5 mini instruct", "phi3", PHI3_TEMPLATE,
           ("<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), "<s>", "<|endoftext|>",
           eot="<|end|>",
           expected_prompt=("<|system|>\nYou are brief.<|end|>\n<|user|>\nthe word and the other one<|end|>\n"
                            "<|assistant|>\nit was not said<|end|>\n<|user|>\nwhat was said<|end|>\n"
                            "<|assistant|>\n"),
           notes="fused attn_qkv, fused gate+up in ffn_up (2 x n_ff), NEOX rope with longrope factors "
                 "(rope_factors_long/short, as Phi-3.5)"),
    Family("gemma2", "Gemma 2 (2B it)", "gemma2", GEMMA2_TEMPLATE,
           ("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>"), "<bos>", "<eos>", eot="<end_of_turn>",
           messages=CHAT_NO_SYSTEM,
           expected_prompt=("<bos><start_of_turn>user\nthe word and the other one<end_of_turn>\n"
                            "<start_of_turn>model\nit was not said<end_of_turn>\n"
                            "<start_of_turn>user\nwhat was said<end_of_turn>\n<start_of_turn>model\n"),
           notes="post-attention and post-FFN norms, GELU, embeddings scaled by sqrt(n_embd), tied output, "
                 "attention soft-cap 5 and final soft-cap 3 (real: 50 and 30, small here so random logits bend), "
                 "sliding window 8 on every other layer"),
    Family("gemma3", "Gemma 3 (270M, 1B it)", "gemma3", GEMMA3_TEMPLATE,
           ("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>"), "<bos>", "<eos>", eot="<end_of_turn>",
           expected_prompt=("<bos><start_of_turn>user\nYou are brief.\n\nthe word and the other one<end_of_turn>\n"
                            "<start_of_turn>model\nit was not said<end_of_turn>\n"
                            "<start_of_turn>user\nwhat was said<end_of_turn>\n<start_of_turn>model\n"),
           notes="q/k RMS norms, post-norms, sliding window 8 (pattern 2: layer 0 local, layer 1 global) with "
                 "its own rope base (1e4 local, 1e6 global), tied output"),
    Family("qwen2", "Qwen2 / Qwen2.5 instruct", "qwen2", QWEN2_TEMPLATE,
           ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), "<|endoftext|>", "<|im_end|>", add_bos=False,
           expected_prompt=("<|im_start|>system\nYou are brief.<|im_end|>\n"
                            "<|im_start|>user\nthe word and the other one<|im_end|>\n"
                            "<|im_start|>assistant\nit was not said<|im_end|>\n"
                            "<|im_start|>user\nwhat was said<|im_end|>\n<|im_start|>assistant\n"),
           notes="q/k/v biases, GQA (4 heads, 2 KV), NEOX rope base 1e6, tied output, no BOS, byte-level BPE with "
                 "Qwen2's pre-tokenizer", bpe="qwen2", seed=3),
    Family("openelm", "OpenELM (270M-3B instruct)", "openelm", LLAMA2_TEMPLATE, (), "<s>", "</s>",
           expected_prompt=("<s>[INST] <<SYS>>\nYou are brief.\n<</SYS>>\n\nthe word and the other one [/INST]"
                            " it was not said </s><s>[INST] what was said [/INST]"),
           notes="per-layer head counts (2 then 4 query heads, 1 then 2 KV heads) and FFN widths (96, 160), "
                 "fused QKV with q/k norms, head size given by key_length, tied output; the Llama 2 chat format "
                 "(OpenELM ships no template)"),
    Family("mixtral", "Mixtral-style MoE (llama arch)", "llama", MISTRAL_TEMPLATE, ("[INST]", "[/INST]"),
           "<s>", "</s>",
           expected_prompt=("<s>[INST] You are brief.\n\nthe word and the other one [/INST]it was not said</s>"
                            "[INST] what was said [/INST]"),
           notes="8 experts, 2 used per token: ffn_gate_inp and ffn_{gate,up,down}_exps instead of the dense FFN"),
]}


def _byte_chars() -> list[str]:
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the others for characters from U+0100 on."""
    kept = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in kept:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def bpe_vocabulary() -> tuple[list[str], list[str]]:
    """A byte-level BPE vocabulary (as Llama 3's and Qwen2's, in small): the 256 byte characters, then " word" pieces
    built by merges from the left (every prefix is a token too). Returns tokens and merges."""
    chars = _byte_chars()
    space = chars[ord(" ")]
    tokens, merges = list(chars), []
    for word in WORDS:
        piece = space
        for ch in word:
            if piece + ch not in tokens:
                merges.append(f"{piece} {ch}")
                tokens.append(piece + ch)
            piece += ch
    return tokens, merges


def family_vocabulary(family: Family) -> tuple[list[str], list[float], list[int]]:
    if family.bpe:
        tokens, _ = bpe_vocabulary()
        scores, types = [0.0] * len(tokens), [int(gguf.TokenType.NORMAL)] * len(tokens)
    else:
        tokens, scores, types = vocabulary()
    for special in family.specials:
        if special not in tokens:
            tokens.append(special)
            scores.append(0.0)
            types.append(int(gguf.TokenType.CONTROL))
    return tokens, scores, types


# What each block adds to the residual stream, made BOOST times larger than a plain random draw in the families
# with tied embeddings (output = token_embd). There, a random model whose residual stream is mostly the input
# token's embedding predicts that same token again and again (the Gemma models repeated one token 32 times
# without it); larger block outputs give greedy runs of many different tokens (7 to 19 of 32, measured), which
# makes a comparison of 32 tokens worth something.
BOOSTED = ("attn_output.weight", "ffn_down.weight", "ffn_down_exps.weight", "post_attention_norm.weight",
           "post_ffw_norm.weight")
BOOST = 4.0
TIED = {"llama3", "gemma2", "gemma3", "qwen2", "openelm"}


class _Tensors:
    """Adds random tensors (rows = outputs, numpy order) quantized as asked; 1-D tensors stay F32."""

    def __init__(self, writer: gguf.GGUFWriter, quant: str, seed: int, boost: float):
        self.w, self.quant, self.rng, self.boost = writer, quant, np.random.default_rng(seed), boost

    def matrix(self, name: str, *shape: int) -> None:
        scale = self.boost if name.endswith(BOOSTED) else 1.0
        data = (scale * self.rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
        if self.quant != "F32":
            qtype = QUANTS[self.quant]
            self.w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            self.w.add_tensor(name, data)

    def f32(self, name: str, data: np.ndarray) -> None:
        self.w.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))

    def norm(self, name: str, n: int) -> None:
        scale = self.boost if name.endswith(BOOSTED) else 1.0
        self.f32(name, scale * (1 + 0.1 * self.rng.standard_normal(n)))

    def bias(self, name: str, n: int) -> None:
        self.f32(name, 0.1 * self.rng.standard_normal(n))


def _attention(t: _Tensors, i: int, n_head: int, n_head_kv: int, head: int, fused: bool = False,
               biases: bool = False) -> None:
    if fused:
        t.matrix(f"blk.{i}.attn_qkv.weight", (n_head + 2 * n_head_kv) * head, N_EMBD)
    else:
        for part, heads in (("q", n_head), ("k", n_head_kv), ("v", n_head_kv)):
            t.matrix(f"blk.{i}.attn_{part}.weight", heads * head, N_EMBD)
            if biases:
                t.bias(f"blk.{i}.attn_{part}.bias", heads * head)
    t.matrix(f"blk.{i}.attn_output.weight", N_EMBD, n_head * head)


def _dense_ffn(t: _Tensors, i: int, n_ff: int) -> None:
    t.matrix(f"blk.{i}.ffn_gate.weight", n_ff, N_EMBD)
    t.matrix(f"blk.{i}.ffn_up.weight", n_ff, N_EMBD)
    t.matrix(f"blk.{i}.ffn_down.weight", N_EMBD, n_ff)


def _llama_like(w: gguf.GGUFWriter, t: _Tensors, n_vocab: int, *, n_head: int, n_head_kv: int, rope_base: float,
                tied: bool, rope_freqs: bool = False, n_expert: int = 0, n_ff: int = 128) -> None:
    head = N_EMBD // n_head
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head)
    w.add_rope_freq_base(rope_base)
    if n_expert:
        w.add_expert_count(n_expert)
        w.add_expert_used_count(2)
    t.matrix("token_embd.weight", n_vocab, N_EMBD)
    if rope_freqs:  # Llama 3.1+: per-frequency divisors, 1 for high frequencies up to 8 for low ones
        t.f32("rope_freqs.weight", np.geomspace(1.0, 8.0, head // 2))
    for i in range(N_LAYER):
        t.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        _attention(t, i, n_head, n_head_kv, head)
        t.norm(f"blk.{i}.ffn_norm.weight", N_EMBD)
        if n_expert:
            t.f32(f"blk.{i}.ffn_gate_inp.weight", t.rng.standard_normal((n_expert, N_EMBD)) / np.sqrt(N_EMBD))
            t.matrix(f"blk.{i}.ffn_gate_exps.weight", n_expert, n_ff, N_EMBD)
            t.matrix(f"blk.{i}.ffn_up_exps.weight", n_expert, n_ff, N_EMBD)
            t.matrix(f"blk.{i}.ffn_down_exps.weight", n_expert, N_EMBD, n_ff)
        else:
            _dense_ffn(t, i, n_ff)
    t.norm("output_norm.weight", N_EMBD)
    if not tied:
        t.matrix("output.weight", n_vocab, N_EMBD)


def _phi3(w, t, n_vocab):
    n_head, n_ff, head = 4, 128, N_EMBD // 4
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head)
    w.add_rope_freq_base(10000.0)
    w.add_rope_scaling_attn_factors(1.19)
    w.add_rope_scaling_orig_ctx_len(N_CTX // 2)
    t.matrix("token_embd.weight", n_vocab, N_EMBD)
    t.f32("rope_factors_long.weight", np.linspace(1.0, 6.0, head // 2))
    t.f32("rope_factors_short.weight", np.linspace(1.0, 1.5, head // 2))
    for i in range(N_LAYER):
        t.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        _attention(t, i, n_head, n_head, head, fused=True)
        t.norm(f"blk.{i}.ffn_norm.weight", N_EMBD)
        t.matrix(f"blk.{i}.ffn_up.weight", 2 * n_ff, N_EMBD)
        t.matrix(f"blk.{i}.ffn_down.weight", N_EMBD, n_ff)
    t.norm("output_norm.weight", N_EMBD)
    t.matrix("output.weight", n_vocab, N_EMBD)


def _gemma(w, t, n_vocab, version: int):
    n_head, n_head_kv, n_ff, head = 4, 2, 128, N_EMBD // 4
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(8)
    w.add_sliding_window_pattern(2)
    if version == 2:
        w.add_attn_logit_softcapping(5.0)
        w.add_final_logit_softcapping(3.0)
        w.add_rope_freq_base(10000.0)
    else:
        w.add_rope_freq_base(1_000_000.0)
        w.add_rope_freq_base_swa(10000.0)
    t.matrix("token_embd.weight", n_vocab, N_EMBD)
    for i in range(N_LAYER):
        t.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        _attention(t, i, n_head, n_head_kv, head)
        if version == 3:
            t.norm(f"blk.{i}.attn_q_norm.weight", head)
            t.norm(f"blk.{i}.attn_k_norm.weight", head)
        t.norm(f"blk.{i}.post_attention_norm.weight", N_EMBD)
        t.norm(f"blk.{i}.ffn_norm.weight", N_EMBD)
        _dense_ffn(t, i, n_ff)
        t.norm(f"blk.{i}.post_ffw_norm.weight", N_EMBD)
    t.norm("output_norm.weight", N_EMBD)


def _qwen2(w, t, n_vocab):
    n_head, n_head_kv, n_ff, head = 4, 2, 128, N_EMBD // 4
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1_000_000.0)
    t.matrix("token_embd.weight", n_vocab, N_EMBD)
    for i in range(N_LAYER):
        t.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        _attention(t, i, n_head, n_head_kv, head, biases=True)
        t.norm(f"blk.{i}.ffn_norm.weight", N_EMBD)
        _dense_ffn(t, i, n_ff)
    t.norm("output_norm.weight", N_EMBD)


OPENELM_HEADS, OPENELM_KV_HEADS, OPENELM_FF = [2, 4], [1, 2], [96, 160]


def _openelm(w, t, n_vocab):
    head = 16
    w.add_feed_forward_length(OPENELM_FF)
    w.add_head_count(OPENELM_HEADS)
    w.add_head_count_kv(OPENELM_KV_HEADS)
    w.add_key_length(head)
    w.add_value_length(head)
    w.add_rope_dimension_count(head)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    t.matrix("token_embd.weight", n_vocab, N_EMBD)
    for i in range(N_LAYER):
        t.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        _attention(t, i, OPENELM_HEADS[i], OPENELM_KV_HEADS[i], head, fused=True)
        t.norm(f"blk.{i}.attn_q_norm.weight", head)
        t.norm(f"blk.{i}.attn_k_norm.weight", head)
        t.norm(f"blk.{i}.ffn_norm.weight", N_EMBD)
        _dense_ffn(t, i, OPENELM_FF[i])
    t.norm("output_norm.weight", N_EMBD)


BODIES: dict[str, Callable] = {
    "llama3": lambda w, t, v: _llama_like(w, t, v, n_head=4, n_head_kv=2, rope_base=500000.0, tied=True,
                                          rope_freqs=True),
    "mistral": lambda w, t, v: _llama_like(w, t, v, n_head=4, n_head_kv=2, rope_base=1e6, tied=False),
    "wizardlm": lambda w, t, v: _llama_like(w, t, v, n_head=4, n_head_kv=4, rope_base=10000.0, tied=False),
    "phi3": _phi3,
    "gemma2": lambda w, t, v: _gemma(w, t, v, 2),
    "gemma3": lambda w, t, v: _gemma(w, t, v, 3),
    "qwen2": _qwen2,
    "openelm": _openelm,
    "mixtral": lambda w, t, v: _llama_like(w, t, v, n_head=4, n_head_kv=2, rope_base=1e6, tied=False,
                                           n_expert=8, n_ff=64),
}


def write_family(path: str | Path, key: str, quant: str = "Q4_0", seed: int = 0) -> Path:
    """Write the tiny model of family `key` (a FAMILIES key) with its big matrices in `quant`."""
    family = FAMILIES[key]
    path = Path(path)
    tokens, scores, types = family_vocabulary(family)
    w = gguf.GGUFWriter(str(path), family.arch)
    w.add_name(f"tiny-{key}-{quant.lower()}-s{seed}")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_file_type(FILE_TYPES[quant])
    if family.bpe:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(family.bpe)
        w.add_token_merges(bpe_vocabulary()[1])
    else:
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_scores(scores)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_bos_token_id(tokens.index(family.bos))
    w.add_eos_token_id(tokens.index(family.eos))
    if family.eot:
        w.add_eot_token_id(tokens.index(family.eot))
    if not family.bpe:
        w.add_unk_token_id(0)
    w.add_add_bos_token(family.add_bos)
    w.add_add_eos_token(False)
    w.add_chat_template(family.template)
    BODIES[key](w, _Tensors(w, quant, seed + family.seed, BOOST if key in TIED else 1.0), len(tokens))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


if __name__ == "__main__":
    import sys

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name in FAMILIES:
        print(write_family(out / f"{name}-{(sys.argv[2:] or ['Q4_0'])[0].lower()}.gguf", name,
                           (sys.argv[2:] or ["Q4_0"])[0]))
