"""Constrained JSON generation: the schema subset, the automaton, the masks against brute force, and hundreds of
random-weight generations that must all parse and validate."""
from __future__ import annotations

import json
import random

import jsonschema
import numpy as np
import pytest

from pocketmind import Model
from pocketmind.constrained import SchemaError, compile_schema, generate_json
from pocketmind.constrained import automaton as fsm
from pocketmind.constrained.vocab import COST_NONE, token_table
from pocketmind.sampling import SamplingParams

PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12},
    "age": {"type": "integer"},
    "score": {"type": "number"},
    "ok": {"type": "boolean"},
    "none": {"type": "null"},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "re"]}, "maxItems": 3},
    "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 5},
                                                 "zip": {"type": "integer"}}, "required": ["city"]},
}, "required": ["name", "age"]}

SCHEMAS = [
    PERSON,
    {"type": "object", "properties": {"label": {"type": "string", "enum": ["billing", "bug", "b\u00e9", "q\"x"]},
                                      "why": {"type": "string", "maxLength": 6}}, "required": ["label"]},
    {"type": "object", "properties": {"items": {"type": "array", "maxItems": 4, "items": {
        "type": "object", "properties": {"n": {"type": "number"}, "s": {"type": "string", "maxLength": 3}},
        "required": ["n"]}}}, "required": ["items"]},
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "null"}}},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 5},
    {"type": "array", "items": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}, "maxItems": 3},
    {"type": "string", "maxLength": 8},
    {"type": "object", "properties": {"k\u00fc": {"enum": [1, 12, "x", None, True]},
                                      "m": {"type": "array", "items": {"type": "null"}}}, "required": ["k\u00fc"]},
    {"type": "number"},
    {"type": "object", "properties": {}},
    {"type": "object", "properties": {"n": {"type": "integer", "enum": [3, 30, 300]},
                                      "b": {"type": "boolean", "enum": [True]}}, "required": ["n", "b"]},
]


@pytest.fixture(scope="module")
def tiny(native, tiny_models):
    model = Model.from_file(tiny_models["F16"], native)
    yield model
    model.close()


# ---- the subset ----

@pytest.mark.parametrize("schema, keyword, where", [
    ({"type": "string", "pattern": "^a"}, "pattern", "$"),
    ({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}}, "oneOf", "$.properties.a"),
    ({"type": "object", "properties": {"a": {"$ref": "#/x"}}}, "$ref", "$.properties.a"),
    ({"type": "array", "items": {"type": "string", "format": "email"}}, "format", "$.items"),
    ({"type": "integer", "minimum": 3}, "minimum", "$"),
    ({"type": ["string", "null"]}, "type", "$"),
    ({"type": "object", "properties": {}, "additionalProperties": True}, "additionalProperties", "$"),
    ({"type": "array", "items": {"type": "string"}, "minItems": 1}, "minItems", "$"),
    ({"type": "object", "properties": {"a": {"type": "array", "items": {"anyOf": []}}}}, "anyOf",
     "$.properties.a.items"),
])
def test_unsupported_keywords_are_refused_by_name(schema, keyword, where):
    with pytest.raises(SchemaError) as err:
        compile_schema(schema)
    assert repr(keyword) in str(err.value) or keyword in str(err.value)
    assert str(err.value).startswith(where + ":")


@pytest.mark.parametrize("schema, message", [
    ({"type": "integer", "enum": [1, 2.5]}, "2.5 is not a integer"),
    ({"type": "string", "enum": ["abc"], "maxLength": 2}, "at most 2 characters"),
    ({"type": "object", "properties": {"a": {"type": "null"}}, "required": ["b"]}, "'b' is not among"),
    ({"type": "array"}, "needs 'items'"),
    ({"type": "string", "maxLength": -1}, "maxLength"),
    ({"properties": {}}, "needs a 'type'"),
])
def test_inconsistent_schemas_are_refused(schema, message):
    with pytest.raises(SchemaError, match=message):
        compile_schema(schema)


def test_the_subpackage_ships_in_the_wheel():
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    packages = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert "pocketmind.constrained" in packages


def test_generate_json_refuses_before_generating(native, tiny):
    with tiny.context(n_ctx=64) as ctx:
        with pytest.raises(SchemaError, match="pattern"):
            generate_json(ctx, tiny.tokenize("x"), {"type": "string", "pattern": "a"})
        assert ctx.n_past == 0
        with pytest.raises(ValueError, match="too small"):
            generate_json(ctx, tiny.tokenize("x"), PERSON, max_tokens=10)


# ---- the automaton ----

def _state(schema, text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    return fsm.walk(fsm.start(compile_schema(schema)), data)


@pytest.mark.parametrize("text", [
    '{"name":"Ann","age":3}', '{"age":-0,"name":""}', '{"name":"a\\"\\\\\\n\\/","age":1',
    '{"name":"caf\u00e9 \u6f22\u5b57 \U0001f600","age":12,"score":-1.5e+10,"ok":false,"none":null}',
    '{"name":"x","age":0,"tags":["red","re","green"],"address":{"city":"Paris"}}',
    '{"name":"x","age":0,"address":{"zip":75,"city":""}}', '{"name":"x","age":0,"score":0.25E-3}',
    '{"name":"', '{', '{"na', '{"name":"\xe6', b'{"name":"\xe6\xbc', '{"name":"x","age":12',
])
def test_automaton_accepts_valid_text_and_prefixes(text):
    schema = PERSON
    state = _state(schema, text)
    assert state is not None, text
    complete = fsm.cost(state) == 0
    try:
        jsonschema.validate(json.loads(text), schema)
        assert complete  # a valid document is a complete state
    except ValueError:
        assert not complete


@pytest.mark.parametrize("text", [
    '{ "name"', '{"name":"a","age":1,}', '{"age":1}', '{"name":"a","age":1.5}', '{"name":"a","age":01}',
    '{"name":"a","age":1,"name":"b"}', '{"nam":', '{"name":"0123456789abc"', '{"name":"a\\x"', '{"name":"a\\u0041"',
    '{"name":"a\nb"', b'{"name":"\xc0\x80', b'{"name":"\xed\xa0\x80', b'{"name":"\xe6a', b'{"name":"\xff',
    '{"name":"a","age":1,"tags":["blue"]', '{"name":"a","age":1,"tags":["red","red","red","red"]',
    '{"name":"a","age":1,"address":{}}', '{"name":"a","age":1,"score":1e}', '{"name":"a","age":1,"score":.5',
    '{"name":"a","age":1,"score":1e100', '{"name":"a","age":1,"ok":tru}', '{"name":"a","age":1}x', '[',
    '{"name":"a","age":1,"score":' + "1" * 25,
])
def test_automaton_rejects_invalid_text(text):
    data = text.encode() if isinstance(text, str) else text
    assert _state(PERSON, data) is None, data


@pytest.mark.parametrize("schema", SCHEMAS)
def test_cost_is_the_exact_shortest_completion(schema):
    """From random valid prefixes, following the cheapest bytes ends in a valid value after exactly cost(state)
    bytes: the guarantee that a short token budget still ends in valid JSON."""
    node = compile_schema(schema)
    rng = random.Random(0)
    alphabet = sorted(set(b'{}[]",:-.eE+0123456789truefalsn\\/bxyzabcdefghijklmnopqrstuvwxyz' + "é漢😀".encode()
                          + json.dumps(schema, ensure_ascii=False).encode()))
    for _ in range(60):
        state, prefix = fsm.start(node), b""
        for _ in range(rng.randrange(0, 40)):
            options = [b for b in alphabet if fsm.step(state, b) is not None] if state else []
            if not options:
                break
            b = rng.choice(options)
            state, prefix = fsm.step(state, b), prefix + bytes([b])
        _complete_cheapest(schema, state, prefix)


def _complete_cheapest(schema, state, prefix: bytes) -> None:
    completion = fsm.completion(state)
    assert len(completion) == fsm.cost(state)
    for k in range(len(completion) + 1):  # consistent along its own path: what the token budget relies on
        assert fsm.completion(fsm.walk(state, completion[:k])) == completion[k:], (prefix, completion, k)
    for _ in range(fsm.cost(state)):
        best = min((fsm.cost(s), b) for b in range(256) if (s := fsm.step(state, b)) is not None)
        assert best[0] == fsm.cost(state) - 1, prefix
        state, prefix = fsm.step(state, best[1]), prefix + bytes([best[1]])
    assert fsm.cost(state) == 0
    jsonschema.validate(json.loads(prefix), schema)


def test_cost_from_hand_written_prefixes():
    for prefix in PREFIXES:
        data = prefix.encode() if isinstance(prefix, str) else prefix
        _complete_cheapest(PERSON, _state(PERSON, data), data)


# ---- masks against brute force ----

def _brute_costs(table, masker, state) -> np.ndarray:
    out = np.full(table.n_vocab, COST_NONE, dtype=np.int16)
    for t, data in enumerate(table.tokens):
        if data:
            after = fsm.walk(state, data)
            if after is not None:
                out[t] = masker.cost(after)
    return out


PREFIXES = ['', '{', '{"', '{"name":"', '{"name":"ab', '{"name":"0123456789a', '{"name":"a\\', b'{"name":"\xe6',
            b'{"name":"\xe6\xbc', b'{"name":"\xf0\x9f', '{"name":"x","age":', '{"name":"x","age":-',
            '{"name":"x","age":1', '{"name":"x","age":1,"score":1.', '{"name":"x","age":1,"score":1e',
            '{"name":"x","age":1,"tags":[', '{"name":"x","age":1,"tags":["r', '{"name":"x","age":1,"tags":["red",',
            '{"name":"x","age":1,"address":{"city":"Pa', '{"name":"x","age":1,"ok":f', '{"name":"x","age":1}']


LONG = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 300},
                                         "a": {"type": "array", "items": {"type": "integer"}}}}
LONG_PREFIXES = ['{"s":"', '{"s":"' + "x" * 200, '{"s":"' + "x" * 290, '{"s":"' + "\u00e9" * 295 + "\\",
                 '{"a":[', '{"a":[1,22,', '{"a":[1,22,3']


def _check_masks(model, prefixes, schema=PERSON):
    """Cost arrays from the trie walk and numpy shortcut (cached by capped counters) equal walking every token."""
    table = token_table(model)
    masker = table.masker(schema)
    for prefix in prefixes:
        state = _state(schema, prefix)
        assert state is not None, prefix
        np.testing.assert_array_equal(masker.costs(state), _brute_costs(table, masker, state), err_msg=repr(prefix))


def test_masks_equal_brute_force_on_tiny_vocab(tiny):
    _check_masks(tiny, PREFIXES)
    _check_masks(tiny, LONG_PREFIXES, LONG)


def test_masks_equal_brute_force_on_smollm2(native, smollm2):
    """The real 49k vocabulary: multi-byte pieces, tokens with quotes, long tokens near maxLength."""
    model = Model.from_file(smollm2, native)
    try:
        _check_masks(model, PREFIXES[3:10])
        _check_masks(model, LONG_PREFIXES[1:4], LONG)
    finally:
        model.close()


# ---- hundreds of generations ----

def test_300_random_generations_parse_and_validate(tiny):
    seen = {"finish": set(), "types": set(), "lengths": set()}
    forced = 0  # runs that used their whole budget: the masks closed the value just in time
    rng = random.Random(1)
    with tiny.context(n_ctx=128) as ctx:
        prompt = tiny.tokenize("Give the answer as JSON:")
        for run in range(330):
            schema = SCHEMAS[run % len(SCHEMAS)]
            if run % 3:  # the whole distribution
                params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=run)
            else:  # the usual filters and penalties on top of the -inf logits
                params = SamplingParams(temperature=1.0, top_k=40, top_p=0.9, min_p=0.05, repeat_penalty=1.3,
                                        presence_penalty=0.5, seed=run)
            max_tokens = rng.choice([24, 40, 64])
            value, text, stats = generate_json(ctx, prompt, schema, params, max_tokens=max_tokens)
            assert json.loads(text) == value
            jsonschema.validate(value, schema)
            assert stats.n_generated <= max_tokens
            seen["finish"].add(stats.finish_reason)
            seen["types"].add(type(value).__name__)
            seen["lengths"].add(len(text))
            forced += stats.n_generated == max_tokens
    assert "complete" in seen["finish"] and forced >= 30
    assert {"dict", "list", "str"} <= seen["types"]
    assert len(seen["lengths"]) > 20


def test_optional_properties_and_enums_all_occur(tiny):
    """The masks do not starve the choices: over seeds, optional keys appear and are left out, every enum occurs."""
    schema = SCHEMAS[1]
    labels, whys = set(), set()
    with tiny.context(n_ctx=128) as ctx:
        for seed in range(60):
            params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed)
            value, _, _ = generate_json(ctx, tiny.tokenize("x"), schema, params, max_tokens=30)
            labels.add(value["label"])
            whys.add("why" in value)
    assert labels == {"billing", "bug", "b\u00e9", "q\"x"}
    assert whys == {True, False}


def test_same_seed_same_output_and_greedy_works(tiny):
    with tiny.context(n_ctx=128) as ctx:
        p = SamplingParams(temperature=1.0, seed=7)
        a = generate_json(ctx, tiny.tokenize("x"), PERSON, p, max_tokens=48)[1]
        b = generate_json(ctx, tiny.tokenize("x"), PERSON, p, max_tokens=48)[1]
        g = generate_json(ctx, tiny.tokenize("x"), PERSON, SamplingParams(temperature=0.0), max_tokens=48)
    assert a == b
    jsonschema.validate(g[0], PERSON)


@pytest.mark.parametrize("schema", [PERSON, SCHEMAS[2], SCHEMAS[7]])
def test_shortest_budget_still_valid(tiny, schema):
    """max_tokens = the token count of the shortest value: every run still ends valid, within it."""
    masker = token_table(tiny).masker(schema)
    need = masker.cost(masker.start)
    assert 0 < need <= fsm.cost(masker.start)  # tokens, at most the bytes (equal here: the tiny vocab has no
    # multi-byte pieces of JSON punctuation)
    with tiny.context(n_ctx=128) as ctx:
        for seed in range(10):
            params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed)
            value, text, stats = generate_json(ctx, tiny.tokenize("x"), schema, params, max_tokens=need)
            jsonschema.validate(value, schema)
            assert stats.n_generated <= need
        with pytest.raises(ValueError, match="too small"):
            generate_json(ctx, tiny.tokenize("x"), schema, max_tokens=need - 1)


def test_token_budget_always_has_a_way_out(native, smollm2):
    """From states along real SmolLM2 tokens, the longest token starting the shortest completion lowers the
    token count by exactly one."""
    model = Model.from_file(smollm2, native)
    try:
        table = token_table(model)
        masker = table.masker(PERSON)
        assert masker.cost(masker.start) < fsm.cost(masker.start) / 2  # far fewer tokens than bytes
        for prefix in PREFIXES[:-1] + ['{"name":"caf\u00e9","age":12,"address":{"ci']:
            state = _state(PERSON, prefix)
            while state and masker.cost(state):
                completion = fsm.completion(state)
                best = max((t for t, data in enumerate(table.tokens) if data and completion.startswith(data)),
                           key=lambda t: len(table.tokens[t]))
                after = fsm.walk(state, table.tokens[best])
                assert masker.cost(after) == masker.cost(state) - 1, (prefix, completion)
                state = after
    finally:
        model.close()
