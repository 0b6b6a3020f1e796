"""pocketmind.bench under CPython (native backend, tiny random model): the prompt, the events, the rates, stop, and
the chat service's streamed speed test that the Benchmark page's worker calls."""
from __future__ import annotations

import json

import pytest

from pocketmind import Model
from pocketmind import bench
from pocketmind.chat_service import ChatService
from pocketmind.generate import Generator


@pytest.fixture()
def model(native, tiny_models):
    with Model.from_file(tiny_models["F32"], native) as m:
        yield m


def test_text_prompt_has_exactly_n_tokens_of_the_text(model):
    once = [int(t) for t in model.tokenize(bench.TEXT)]
    for n in (1, 16, len(once), len(once) + 40):
        prompt = bench.text_prompt(model, n)
        assert len(prompt) == n
        assert prompt[:min(n, len(once))] == once[:n]  # the text itself, then more of it
    with pytest.raises(ValueError, match="whole number of tokens"):
        bench.text_prompt(model, 0)


def test_run_streams_progress_then_rates_and_leaves_the_cache_empty(model):
    with model.context(n_ctx=256) as ctx:
        gen = Generator(ctx)
        prompt = bench.text_prompt(model, 24)
        events = list(bench.run(gen, prompt, 12))
        done = events[-1]
        assert done["type"] == "done" and not done["stopped"]
        assert [e["type"] for e in events[:-1]] == ["progress"] * (len(events) - 1)
        phases = [e["phase"] for e in events[:-1]]
        assert phases[0] == "warm-up" and "prompt" in phases
        gen_events = [e for e in events if e.get("phase") == "generate"]
        assert [e["done"] for e in gen_events] == list(range(1, done["n_generated"] + 1))
        assert done["n_prompt"] == 24 and 1 <= done["n_generated"] <= 12
        assert done["pp_tps"] == pytest.approx(24 / done["prompt_seconds"])
        if done["n_generated"] > 1:
            assert done["tg_tps"] == pytest.approx((done["n_generated"] - 1) / done["generation_seconds"])
        assert ctx.n_past == 0 and gen.tokens == []


def test_between_a_phases_first_and_last_token_progress_is_quiet_for_progress_seconds(model, monkeypatch):
    monkeypatch.setattr(bench, "PROGRESS_SECONDS", 3600.0)
    with model.context(n_ctx=256) as ctx:
        gen = Generator(ctx)
        events = list(bench.run(gen, bench.text_prompt(model, 24), 12))
        done = events[-1]
        assert done["n_generated"] == 12  # (random weights: no end-of-generation token in 12)
        tokens = [e for e in events[:-1] if e["phase"] != "prompt"]
        # still an event per token; the warm-up's two rounds of 8 tokens count on as one phase of 16
        assert [(e["phase"], e["done"]) for e in tokens] == [("warm-up", i) for i in range(1, 17)] + \
            [("generate", i) for i in range(1, 13)]
        loud = [(e["phase"], e["done"], e["total"]) for e in tokens if not e.get("quiet")]
        assert loud == [("warm-up", 1, 16), ("warm-up", 16, 16), ("generate", 1, 12), ("generate", 12, 12)]
        assert not any(e.get("quiet") for e in events if e["type"] == "done" or e["phase"] == "prompt")
    monkeypatch.setattr(bench, "PROGRESS_SECONDS", 0.0)
    with model.context(n_ctx=256) as ctx:
        assert not any(e.get("quiet") for e in bench.run(Generator(ctx), bench.text_prompt(model, 24), 12))


def test_run_refuses_what_does_not_fit(model):
    with model.context(n_ctx=64) as ctx:
        gen = Generator(ctx)
        with pytest.raises(ValueError, match="do not fit"):
            list(bench.run(gen, bench.text_prompt(model, ctx.n_ctx - 4), 8))
        with pytest.raises(ValueError, match=">= 1"):
            list(bench.run(gen, [1, 2], 0))


@pytest.mark.parametrize("after", [1, 5])  # in the warm-up, and after it (during the measured run)
def test_abort_ends_the_run_with_a_stopped_done_event(model, after):
    with model.context(n_ctx=256) as ctx:
        gen = Generator(ctx)
        seen = []
        flag = {"stop": False}
        for event in bench.run(gen, bench.text_prompt(model, 16), 32, abort=lambda: flag["stop"]):
            seen.append(event)
            if len(seen) == after:
                flag["stop"] = True
        done = seen[-1]
        assert done["type"] == "done" and done["stopped"] and done["finish_reason"] == "abort"
        assert len(seen) <= after + 2  # nothing ran on after the stop but the done event (and a text flush)
        assert ctx.n_past == 0


def test_chat_service_streams_the_speed_test_and_stops_it(native, tiny_models, monkeypatch):
    monkeypatch.setattr(bench, "PROGRESS_SECONDS", 3600.0)
    with Model.from_file(tiny_models["F32"], native) as m:
        service = ChatService(m, n_ctx=256)
        service.start_bench(json.dumps({"n_prompt": 20, "n_gen": 6}))
        steps = []
        while (event := service.step()) is not None:
            steps.append(event)
        events = [json.loads(e) for e in steps if e]  # "": a quiet token's step, nothing to post
        assert events[-1]["type"] == "done" and events[-1]["n_prompt"] == 20 and events[-1]["pp_tps"] > 0
        assert all(e["type"] == "progress" and "quiet" not in e for e in events[:-1]) and service.step() is None
        # all tokens but each phase's first and last: the warm-up's two rounds of 6 tokens and the run's 6
        assert steps.count("") == (2 * 6 - 2) + (6 - 2)

        service.start_bench(json.dumps({"tokens": [1, 2, 3, 4, 5], "n_gen": 30}))
        first = json.loads(service.step())
        service.stop()
        rest = []
        while (event := service.step()) is not None:
            rest.append(json.loads(event))
        assert first["type"] == "progress" and rest[-1]["type"] == "done" and rest[-1]["stopped"]
        assert rest[-1]["n_prompt"] == 5

        # the one-call form browser_chat.py uses
        once = json.loads(service.bench(16, 4))
        assert once["pp_tps"] > 0 and 1 <= once["n_generated"] <= 4
        # a chat still answers after the speed tests
        answer = service.answer(json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                                            "settings": {"temperature": 0}}))
        assert answer["done"]["type"] == "done"
