"""A byte-level pushdown automaton for compact JSON that fits a compiled schema (schema.Node).

A state is a tuple of frames (a stack, innermost last); it is immutable and hashable, so a trie walk can branch
from it and masks can be cached by it. step(state, byte) gives the next state or None (byte not allowed);
the empty tuple means the top-level value is complete and nothing may follow. cost(state) is the exact number
of bytes of the shortest completion: it is 0 exactly when the output so far is a complete valid value.

No whitespace is ever allowed (compact output). Strings are checked as UTF-8 byte by byte, so a token may carry
part of a character; escapes are the two-character ones (\\" \\\\ \\/ \\b \\f \\n \\r \\t), never \\uXXXX, which
would add surrogates for nothing: any character can be written as itself.
"""
from __future__ import annotations

from .schema import EXPONENT_DIGITS, NUMBER_CAP, Node

# frame tags
V, S, N, L, O, K, A = range(7)
# (V, node)                      a value of node is expected
# (S, chars_left, need, lo, hi, esc)  inside a string: UTF-8 continuation bytes still needed (the next one in
#                                lo..hi), esc = a backslash was just read
# (N, integer, phase, room)      inside a number (phases below), room = characters it may still take
# (L, options, pos)              inside a literal (true/false/null/enum): the options still matching
# (O, node, seen, phase, key)    an object: 0 after '{', 1 after ',', 2 after key `key` (':' next), 3 after a value
# (K, node, seen, keys, pos)     inside a key: indices of the names still matching
# (A, node, items_left, phase)   an array: 0 after '[', 1 after a value

_POP = object()  # the frame was complete and cannot take the byte: its parent gets it

# number phases: 0 start, 1 after '-', 2 after a leading 0, 3 integer digits, 4 after '.', 5 fraction digits,
# 6 after 'e', 7 after the exponent's sign, 8.. exponent digits (8 = one digit)
_NUMBER_NEEDS = {0: 1, 1: 1, 2: 0, 3: 0, 4: 1, 5: 0, 6: 1, 7: 1}  # bytes to make it complete; exponent digits: 0
_DIGITS = frozenset(b"0123456789")
_ESCAPES = frozenset(b'"\\/bfnrt')


def _utf8_lead(b: int) -> tuple[int, int, int] | None:
    """Continuation bytes a lead byte needs, and the range of the first one (no overlongs, no surrogates)."""
    if 0xC2 <= b <= 0xDF:
        return 1, 0x80, 0xBF
    if b == 0xE0:
        return 2, 0xA0, 0xBF
    if 0xE1 <= b <= 0xEF:
        return (2, 0x80, 0x9F) if b == 0xED else (2, 0x80, 0xBF)
    if b == 0xF0:
        return 3, 0x90, 0xBF
    if 0xF1 <= b <= 0xF3:
        return 3, 0x80, 0xBF
    if b == 0xF4:
        return 3, 0x80, 0x8F
    return None


def start(root: Node) -> tuple:
    return ((V, root),)


def _step_value(base, f, b):
    node = f[1]
    kind = node.kind
    if kind == "object":
        return base + ((O, node, 0, 0, -1),) if b == 0x7B else None
    if kind == "array":
        return base + ((A, node, node.max_items, 0),) if b == 0x5B else None
    if kind == "string":
        return base + ((S, node.max_length, 0, 0, 0, 0),) if b == 0x22 else None
    if kind == "literal":
        r = _step_literal(base, (L, node.options, 0), b)
    else:
        r = _step_number(base, (N, kind == "integer", 0, NUMBER_CAP), b)
    return None if r is _POP else r


def _step_string(base, f, b):
    _, left, need, lo, hi, esc = f
    if esc:
        return base + ((S, left, 0, 0, 0, 0),) if b in _ESCAPES else None
    if need:
        return base + ((S, left, need - 1, 0x80, 0xBF, 0),) if lo <= b <= hi else None
    if b == 0x22:
        return base
    if b < 0x20 or left == 0:
        return None
    if b == 0x5C:
        return base + ((S, left - 1, 0, 0, 0, 1),)
    if b < 0x80:
        return base + ((S, left - 1, 0, 0, 0, 0),)
    lead = _utf8_lead(b)
    return None if lead is None else base + ((S, left - 1) + lead + (0,),)


def _number_next(integer: bool, phase: int, b: int) -> int:
    digit = b in _DIGITS
    if phase == 0:
        return 1 if b == 0x2D else 2 if b == 0x30 else 3 if digit else -1
    if phase == 1:
        return 2 if b == 0x30 else 3 if digit else -1
    if phase in (2, 3, 5):
        if digit and phase != 2:
            return phase
        if integer:
            return -1
        if b == 0x2E and phase != 5:
            return 4
        return 6 if b in (0x65, 0x45) else -1
    if phase == 4:
        return 5 if digit else -1
    if phase == 6:
        return 7 if b in (0x2B, 0x2D) else 8 if digit else -1
    if phase == 7:
        return 8 if digit else -1
    return phase + 1 if digit and phase - 8 + 1 < EXPONENT_DIGITS else -1


def _step_number(base, f, b):
    _, integer, phase, room = f
    nxt = _number_next(integer, phase, b)
    if nxt >= 0 and room - 1 >= _NUMBER_NEEDS.get(nxt, 0):
        return base + ((N, integer, nxt, room - 1),)
    return _POP if _NUMBER_NEEDS.get(phase, 0) == 0 else None


def _step_literal(base, f, b):
    _, options, pos = f
    matching = tuple(o for o in options if len(o) > pos and o[pos] == b)
    if matching:
        if all(len(o) == pos + 1 for o in matching):
            return base  # complete, and nothing longer can follow
        return base + ((L, matching, pos + 1),)
    return _POP if any(len(o) == pos for o in options) else None


def _unseen(node: Node, seen: int) -> list[int]:
    return [i for i in range(len(node.names)) if not seen >> i & 1]


def _step_object(base, f, b):
    _, node, seen, phase, key = f
    if phase in (0, 1):
        if b == 0x22:
            keys = tuple(_unseen(node, seen))
            return base + ((K, node, seen, keys, 1),) if keys else None
        return base if phase == 0 and b == 0x7D and not node.required else None
    if phase == 2:
        return base + ((O, node, seen, 3, -1), (V, node.values[key])) if b == 0x3A else None
    if b == 0x2C:
        return base + ((O, node, seen, 1, -1),) if _unseen(node, seen) else None
    return base if b == 0x7D and not node.required & ~seen else None


def _step_key(base, f, b):
    _, node, seen, keys, pos = f
    matching = tuple(k for k in keys if node.names[k][pos] == b)
    if not matching:
        return None
    k = matching[0]
    if len(node.names[k]) == pos + 1:  # the closing quote: names are prefix-free
        return base + ((O, node, seen | 1 << k, 2, k),)
    return base + ((K, node, seen, matching, pos + 1),)


def _step_array(base, f, b):
    _, node, left, phase = f
    if b == 0x5D:
        return base
    if phase == 0:
        return step(base + ((A, node, left - 1, 1), (V, node.items)), b) if left > 0 else None
    return base + ((A, node, left - 1, 1), (V, node.items)) if b == 0x2C and left > 0 else None


_STEP = {V: _step_value, S: _step_string, N: _step_number, L: _step_literal, O: _step_object, K: _step_key,
         A: _step_array}


def step(state: tuple, b: int) -> tuple | None:
    while state:
        r = _STEP[state[-1][0]](state[:-1], state[-1], b)
        if r is not _POP:
            return r
        state = state[:-1]  # a complete number or literal ends here; its parent reads the byte
    return None


def walk(state: tuple | None, data: bytes) -> tuple | None:
    for b in data:
        if state is None:
            return None
        state = step(state, b)
    return state


def _close(node: Node, seen: int) -> int:
    """Bytes to close an object after a value: the required properties still missing, then '}'."""
    missing = node.required & ~seen
    return 1 + sum(1 + node.entry[i] for i in range(len(node.names)) if missing >> i & 1)


def frame_cost(f: tuple) -> int:
    tag = f[0]
    if tag == V:
        return f[1].min_bytes
    if tag == S:
        return f[2] + f[5] + 1
    if tag == N:
        return _NUMBER_NEEDS.get(f[2], 0)
    if tag == L:
        return min(len(o) for o in f[1]) - f[2]
    if tag == A:
        return 1
    if tag == K:
        node, seen, pos = f[1], f[2], f[4]
        return min(len(node.names[k]) - pos + 1 + node.values[k].min_bytes + _close(node, seen | 1 << k)
                   for k in f[3])
    node, seen, phase = f[1], f[2], f[3]
    if phase == 0:
        return node.min_bytes - 1
    if phase == 1:
        missing = node.required & ~seen
        if missing:
            return _close(node, seen) - 1
        return 1 + min(node.entry[i] for i in _unseen(node, seen))
    if phase == 2:
        return 1 + node.values[f[4]].min_bytes + _close(node, seen)
    return _close(node, seen)


def cost(state: tuple) -> int:
    return sum(frame_cost(f) for f in state)


def cache_key(state: tuple, cap: int) -> tuple:
    """The state with its counters (characters, room, items left) capped: states that differ only above `cap`
    accept exactly the same byte strings of length < cap, with the same costs."""
    out = []
    for f in state:
        if f[0] == S and f[1] > cap:
            f = (S, cap) + f[2:]
        elif f[0] == N and f[3] > cap:
            f = f[:3] + (cap,)
        elif f[0] == A and f[2] > cap:
            f = f[:2] + (cap, f[3])
        out.append(f)
    return tuple(out)


# ---- the shortest completion itself ----
# completion(state) is one shortest completion (cost(state) bytes), chosen so that it is consistent along its own
# path: after writing any prefix p of completion(s), completion of the new state is the rest. Ties go to the lowest
# index (of a property, of an enum option). That makes "tokens of the completion" a budget that a token can always
# honour: the longest token that starts the completion leaves exactly the rest to write.

def _value_bytes(node: Node) -> bytes:
    kind = node.kind
    if kind == "object":
        return b"{" + _entries(node, node.required) + b"}"
    if kind == "array":
        return b"[]"
    if kind == "string":
        return b'""'
    if kind == "literal":
        return min(node.options, key=len)
    return b"0"


def _entry(node: Node, k: int) -> bytes:
    return node.names[k] + b":" + _value_bytes(node.values[k])


def _entries(node: Node, mask: int) -> bytes:
    return b",".join(_entry(node, i) for i in range(len(node.names)) if mask >> i & 1)


def _closing(node: Node, seen: int) -> bytes:
    missing = node.required & ~seen
    return b"".join(b"," + _entry(node, i) for i in range(len(node.names)) if missing >> i & 1) + b"}"


def _best_key(node: Node, seen: int, keys, pos: int) -> int:
    return min(keys, key=lambda k: (len(node.names[k]) - pos + node.values[k].min_bytes
                                    + _close(node, seen | 1 << k), k))


def frame_completion(f: tuple) -> bytes:
    tag = f[0]
    if tag == V:
        return _value_bytes(f[1])
    if tag == S:
        _, _, need, lo, _, esc = f
        return (b"n" if esc else b"") + (bytes([lo]) + b"\x80" * (need - 1) if need else b"") + b'"'
    if tag == N:
        return b"0" if _NUMBER_NEEDS.get(f[2], 0) else b""
    if tag == L:
        return min(f[1], key=len)[f[2]:]  # min keeps the first of equally short options
    if tag == A:
        return b"]"
    if tag == K:
        node, seen, keys, pos = f[1], f[2], f[3], f[4]
        k = _best_key(node, seen, keys, pos)
        return node.names[k][pos:] + b":" + _value_bytes(node.values[k]) + _closing(node, seen | 1 << k)
    node, seen, phase = f[1], f[2], f[3]
    if phase == 0:
        return _entries(node, node.required) + b"}"
    if phase == 1:
        missing = node.required & ~seen
        if missing:
            return _entries(node, missing) + b"}"
        k = _best_key(node, seen, _unseen(node, seen), 0)
        return _entry(node, k) + b"}"
    if phase == 2:
        return b":" + _value_bytes(node.values[f[4]]) + _closing(node, seen)
    return _closing(node, seen)


def completion(state: tuple) -> bytes:
    """The shortest completion: the innermost frame's first."""
    return b"".join(frame_completion(f) for f in reversed(state))
