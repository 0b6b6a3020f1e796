"""What each token's bytes can do, computed once per model, and the per-state cost arrays built from it.

A step's mask comes from `costs(state)`: for every token, how many tokens the shortest completion after it takes
(COST_NONE when its bytes are not allowed), counted as the greedy longest-match tokenization of
automaton.completion(). Because that completion is consistent along its own path, a state whose count fits the
budget always has a token (the longest one starting its completion) whose count is one less: the budget can
never be missed. Masks for a token budget are then one comparison, and the array is cached by the state with its
counters capped (automaton.cache_key), so a long string reuses one array for most of its length.

How an array is built: a trie over the tokens' bytes is walked together with the automaton, and a subtree is
dropped as soon as the automaton refuses its prefix, so structural states (after '{', inside a key, a number)
visit a few hundred nodes instead of n_vocab tokens. Inside a string almost every token is allowed, and walking
them all would be slow; there, tokens made only of plain string bytes (no quote, backslash or control byte) are
handled at once with numpy from their precomputed UTF-8 shape, and only the other tokens (a few hundred: those
holding a quote, a backslash or a control byte) are walked, through a second, smaller trie.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict

import numpy as np

from . import automaton as fsm
from .schema import Node, compile_schema, dumps

COST_NONE = np.iinfo(np.int16).max
CACHE_STATES = 256  # cost arrays kept per schema (n_vocab int16 each: 96 KiB for a 49k vocabulary)


class Trie:
    def __init__(self, tokens: list[bytes], ids):
        self.children: list[dict[int, int]] = [{}]
        self.ends: list[list[int]] = [[]]
        for t in ids:
            node = 0
            for b in tokens[t]:
                nxt = self.children[node].get(b)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][b] = nxt
                    self.children.append({})
                    self.ends.append([])
                node = nxt
            self.ends[node].append(t)

    def count(self, data: bytes) -> int:
        """Tokens in the greedy longest-match split of data (COST_NONE if some byte has no token)."""
        children, ends = self.children, self.ends
        n = i = 0
        while i < len(data):
            node, best, j = 0, i, i
            while j < len(data):
                node = children[node].get(data[j])
                if node is None:
                    break
                j += 1
                if ends[node]:
                    best = j
            if best == i:
                return int(COST_NONE)
            n, i = n + 1, best
        return n

    def walk(self, state: tuple, cost, ids: list[int], costs: list[int]) -> None:
        """Every token whose bytes the automaton accepts from `state`, with the cost of the state after it."""
        children, ends, step = self.children, self.ends, fsm.step
        todo = [(0, state)]
        while todo:
            node, s = todo.pop()
            if ends[node]:
                c = cost(s)
                ids.extend(ends[node])
                costs.extend([c] * len(ends[node]))
            if s:
                for b, child in children[node].items():
                    s2 = step(s, b)
                    if s2 is not None:
                        todo.append((child, s2))


class TokenTable:
    """One model's tokens: bytes, end-of-generation ids, the tries and the plain-string shape of each token."""

    def __init__(self, model):
        self.n_vocab = model.n_vocab
        self.tokens = [model.token_bytes(t) for t in range(self.n_vocab)]  # control tokens: b""
        # end-of-generation tokens are control tokens (no text) or the declared EOS/EOT: only those are asked about,
        # which halves the calls through Pyodide's bridge
        maybe = {t for t in range(self.n_vocab) if not self.tokens[t]} | {model.eos, model.eot}
        self.eog = np.array(sorted(t for t in maybe if 0 <= t < self.n_vocab and model.is_eog(t)), dtype=np.int64)
        self.max_len = max(len(b) for b in self.tokens)
        self.single_bytes = {b[0] for b in self.tokens if len(b) == 1}
        nonempty = [t for t in range(self.n_vocab) if self.tokens[t]]
        self.trie = Trie(self.tokens, nonempty)
        shape = np.array([_plain_shape(b) for b in self.tokens], dtype=np.int64)
        (self.plain, self.lead_cont, self.length, self.first, self.rest_ok, self.chars, self.end_need,
         self.end_lo) = (shape[:, i] for i in range(8))
        self.plain = self.plain.astype(bool) & (self.length > 0)
        self.rest_ok = self.rest_ok.astype(bool)
        self.other_trie = Trie(self.tokens, [t for t in nonempty if not self.plain[t]])
        self._maskers: dict[str, Masker] = {}

    def masker(self, schema) -> Masker:
        """The masker for a schema (compiled once per table; SchemaError for what is not supported)."""
        try:
            key = dumps(schema).decode() if isinstance(schema, dict) else None
        except (TypeError, ValueError):
            key = None
        if key is None:
            return Masker(self, compile_schema(schema))  # not JSON: compile_schema names the problem
        if key not in self._maskers:
            self._maskers[key] = Masker(self, compile_schema(schema))
        return self._maskers[key]


def _plain_shape(data: bytes) -> tuple[int, ...]:
    """(no quote/backslash/control byte, leading continuation bytes, length, first byte, rest is valid UTF-8
    (maybe cut short at the end), characters started in the rest, continuation bytes the end still needs, the
    lowest allowed next one)."""
    plain = all(b >= 0x20 and b not in (0x22, 0x5C) for b in data)
    lead = 0
    while lead < len(data) and 0x80 <= data[lead] <= 0xBF:
        lead += 1
    need, lo, hi, chars, ok = 0, 0, 0, 0, True
    for b in data[lead:]:
        if need:
            if not lo <= b <= hi:
                ok = False
                break
            need, lo, hi = need - 1, 0x80, 0xBF
        elif b < 0x80:
            chars += 1
        else:
            shape = fsm._utf8_lead(b)
            if shape is None:
                ok = False
                break
            (need, lo, hi), chars = shape, chars + 1
    return int(plain), lead, len(data), data[0] if data else 0, int(ok), chars, need, lo if need else 0


_tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def token_table(model) -> TokenTable:
    """The model's table, built on first use (a fraction of a second for a 49k vocabulary) and kept with it."""
    table = _tables.get(model)
    if table is None:
        table = _tables[model] = TokenTable(model)
    return table


class Masker:
    """Cost arrays for one schema over one token table."""

    def __init__(self, table: TokenTable, root: Node):
        self.table = table
        self.root = root
        self.start = fsm.start(root)
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._costs: dict[tuple, int] = {}
        self.misses = 0

    def cost(self, state: tuple) -> int:
        """Tokens the shortest completion takes (0: the value is complete). Counters do not change it."""
        key = fsm.cache_key(state, 0)
        c = self._costs.get(key)
        if c is None:
            if len(self._costs) > 100_000:
                self._costs.clear()
            c = self._costs[key] = min(self.table.trie.count(fsm.completion(state)), int(COST_NONE) - 1)
        return c

    def costs(self, state: tuple) -> np.ndarray:
        key = fsm.cache_key(state, self.table.max_len + 1)
        out = self._cache.get(key)
        if out is None:
            self.misses += 1
            out = self._cache[key] = self._build(key)
            if len(self._cache) > CACHE_STATES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return out

    def _build(self, state: tuple) -> np.ndarray:
        t = self.table
        out = np.full(t.n_vocab, COST_NONE, dtype=np.int16)
        ids: list[int] = []
        costs: list[int] = []
        top = state[-1] if state else None
        if top is not None and top[0] == fsm.S and not top[5]:
            self._plain_string(state, out)
            t.other_trie.walk(state, self.cost, ids, costs)
        else:
            t.trie.walk(state, self.cost, ids, costs)
        if ids:
            out[np.array(ids)] = np.minimum(np.array(costs), COST_NONE - 1)
        return out

    def _plain_string(self, state: tuple, out: np.ndarray) -> None:
        """Tokens of plain string bytes, all at once: they keep the string open, so only their UTF-8 shape and
        length matter."""
        t = self.table
        _, left, need, lo, hi, _ = state[-1]
        in_range = (t.first >= lo) & (t.first <= hi) if need else True
        whole = t.plain & in_range & (t.lead_cont == need) & t.rest_ok & (t.chars <= left)
        partial = t.plain & in_range & (t.lead_cont == t.length) & (t.length < need)
        # the state after such a token differs only in the UTF-8 bytes it leaves pending (count and first range)
        ends = np.where(whole, t.end_need * 256 + t.end_lo, -1)
        ends[partial] = (need - t.length[partial]) * 256 + 0x80
        for end in np.unique(ends[ends >= 0]):
            pending, first = divmod(int(end), 256)
            after = state[:-1] + ((fsm.S, 0, pending, first, 0xBF, 0),)
            out[ends == end] = self.cost(after)
