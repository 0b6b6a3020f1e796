"""Broken variants of a valid GGUF file, for the bad-input and fuzz tests.

Positions come from gguf's own reader: where the counts, string lengths, tensor dims, types and offsets lie, so
the mutations hit the parser where it must defend itself, not only the tensor data.
"""
from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np


def field_positions(path: Path) -> dict[str, list[tuple[int, int]]]:
    """(byte offset, width) of the integers a loader trusts, grouped by kind."""
    reader = gguf.GGUFReader(str(path))
    base = reader.data.ctypes.data

    def pos(part: np.ndarray) -> tuple[int, int]:
        return part.ctypes.data - base, part.dtype.itemsize

    found: dict[str, list[tuple[int, int]]] = {"counts": [(8, 8), (16, 8)], "lengths": [], "dims": [],
                                                "types": [], "offsets": [], "ndims": []}
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            continue
        found["lengths"].append(pos(field.parts[0]))  # key length
        found["types"].append(pos(field.parts[2]))  # value type
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            found["counts"].append(pos(field.parts[4]))  # array length
            if field.types[-1] == gguf.GGUFValueType.STRING and len(field.parts) > 5:
                found["lengths"].append(pos(field.parts[5]))  # its first string's length
        elif field.types[0] == gguf.GGUFValueType.STRING:
            found["lengths"].append(pos(field.parts[3]))  # string value length
    for tensor in reader.tensors:
        parts = tensor.field.parts
        found["lengths"].append(pos(parts[0]))
        found["ndims"].append(pos(parts[2]))
        found["dims"].append(pos(parts[3][:1]))
        found["types"].append(pos(parts[4]))
        found["offsets"].append(pos(parts[5]))
    return found


def put_int(data: bytearray, where: tuple[int, int], value: int) -> bytearray:
    offset, width = where
    data[offset:offset + width] = struct.pack("<Q" if width == 8 else "<I", value % (1 << (8 * width)))
    return data


def tensor_past_end(path: Path) -> bytes:
    """The last tensor's data offset moved beyond the end of the file."""
    data = bytearray(path.read_bytes())
    return bytes(put_int(data, field_positions(path)["offsets"][-1], len(data)))


def mutations(path: Path, count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """count labelled mutants: truncations, flipped bytes, huge or odd counts, sizes, dims, types, offsets."""
    rng = np.random.default_rng(seed)
    original = path.read_bytes()
    positions = field_positions(path)
    header_end = max(o + w for group in positions.values() for o, w in group)
    extremes = [0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32, 1 << 40, (1 << 63) - 1, (1 << 64) - 1]
    out = []
    kinds = ["truncate", "flip", "extreme", "random-int"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        data = bytearray(original)
        if kind == "truncate":
            cut = int(rng.integers(0, header_end + 64)) if rng.random() < 0.7 else int(rng.integers(0, len(data)))
            out.append((f"{i}-truncate-{cut}", bytes(data[:cut])))
            continue
        if kind == "flip":
            spots = rng.integers(0, header_end, size=int(rng.integers(1, 8)))
            for spot in spots:
                data[spot] ^= 1 << int(rng.integers(0, 8))
            out.append((f"{i}-flip-{'-'.join(map(str, spots))}", bytes(data)))
            continue
        group = list(positions)[int(rng.integers(0, len(positions)))]
        where = positions[group][int(rng.integers(0, len(positions[group])))]
        value = extremes[int(rng.integers(0, len(extremes)))] if kind == "extreme" else int(rng.integers(0, 1 << 31))
        out.append((f"{i}-{group}@{where[0]}={value}", bytes(put_int(data, where, value))))
    return out


def write_corpus(folder: Path, q8_0: Path, f16: Path) -> list[Path]:
    """The fuzzing corpus every build is run on: 240 mutants of a Q8_0 and 60 of an F16 tiny model, as files."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = mutations(q8_0, 240, seed=1) + mutations(f16, 60, seed=2)
    paths = []
    for i, (label, data) in enumerate(cases):
        paths.append(folder / f"{i:04d}-{label[:60]}.gguf")
        paths[-1].write_bytes(data)
    return paths
