"""pocketmind.memory: the rule that refuses a model too large for the engine's memory before it is downloaded."""
from __future__ import annotations

import re

import pytest

import build as wasm_build
from pocketmind import memory

MiB = 1 << 20


def test_the_ceiling_is_the_builds_maximum_memory():
    source = (wasm_build.HERE / "build.py").read_text()
    flags = re.findall(r"-sMAXIMUM_MEMORY=(\d+)GB", source)
    assert flags == ["4"]
    assert memory.WASM_MAX_BYTES == int(flags[0]) << 30


def test_need_is_the_file_plus_the_context_overhead():
    assert memory.need_bytes(100 * MiB) == 100 * MiB + memory.CONTEXT_OVERHEAD_BYTES


def test_a_model_that_fits_is_let_through_and_one_byte_more_is_refused():
    in_use = 30 * MiB
    largest = memory.WASM_MAX_BYTES - in_use - memory.CONTEXT_OVERHEAD_BYTES
    assert memory.room_message("m.gguf", largest, in_use) is None
    memory.check_room("m.gguf", largest, in_use)
    with pytest.raises(MemoryError) as refused:
        memory.check_room("m.gguf", largest + 1, in_use)
    assert "m.gguf is too large" in str(refused.value)


def test_the_message_says_what_is_needed_and_what_is_available():
    message = memory.room_message("models/huge.gguf", 6 << 30, 25 * MiB)
    overhead = memory.CONTEXT_OVERHEAD_BYTES // MiB
    assert f"needs about {6144 + overhead:,} MB of memory" in message
    assert f"6,144 MB for the model and {overhead:,} MB for its context" in message
    assert "only 4,071 MB is available (4,096 MB at most, 25 MB in use by the engine)" in message
    assert "not downloaded" in message


def test_memory_in_use_counts():
    small = 1 << 30
    assert memory.room_message("m", small, 10 * MiB) is None
    assert "only 1,024 MB is available" in memory.room_message("m", small, 3 << 30)


@pytest.mark.parametrize("size", [0, -5, 1.5, True, None, float("nan"), float(2**53 + 2)])
def test_a_size_that_is_not_a_byte_count_is_left_to_the_downloader(size):
    assert memory.room_message("m.gguf", size, 0) is None  # engine-boot.js refuses it with its own message
