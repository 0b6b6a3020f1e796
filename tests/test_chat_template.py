"""Chat templates: the GGUF's own Jinja template in the sandbox, ChatML fallback, clear errors."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pocketmind import Model
from pocketmind import chat_template as ct
from pocketmind.chat_template import CHATML_TEMPLATE, ChatTemplate, ChatTemplateError, render_chat
from tiny_gguf import write_tiny_llama

REPO = Path(__file__).resolve().parents[1]

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a colour."}]


@pytest.fixture
def tiny(native, tiny_models):
    with Model.from_file(tiny_models["F16"], native) as model:
        yield model


def test_tiny_model_renders_chatml(tiny):
    assert render_chat(tiny, CHAT) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n")
    assert render_chat(tiny, CHAT[:1], add_generation_prompt=False) == "<|im_start|>user\nHi<|im_end|>\n"


def test_smollm2_template_renders_its_chatml_with_default_system_prompt(native, smollm2):
    with Model.from_file(smollm2, native) as model:
        question = [{"role": "user", "content": "What is the capital of France?"}]
        # the template adds its own system message when the chat has none
        assert render_chat(model, question) == (
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
        with_system = [{"role": "system", "content": "Be brief."}] + question
        assert render_chat(model, with_system, add_generation_prompt=False) == (
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n")
        template = ChatTemplate.for_model(model)
        assert (template.bos_token, template.eos_token) == ("<|im_start|>", "<|im_end|>")


def test_model_without_template_falls_back_to_chatml(native, tmp_path):
    path = write_tiny_llama(tmp_path / "plain.gguf", "F32", chat_template=None)
    with Model.from_file(path, native) as model:
        assert model.chat_template is None
        template = ChatTemplate.for_model(model)
        assert template.source == CHATML_TEMPLATE
        assert template.render(CHAT[:1]) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_bos_and_eos_texts_come_from_the_model(tiny):
    out = render_chat(tiny, CHAT[:1], template="{{ bos_token }}[{{ messages[0].content }}]{{ eos_token }}")
    assert out == "<s>[Hi]</s>"


def test_trim_and_lstrip_blocks_like_hugging_face():
    source = "{% for m in messages %}\n    {% if m.role == 'user' %}\nU:{{ m.content }}\n    {% endif %}\n{% endfor %}"
    assert ChatTemplate(source).render(CHAT) == "U:Hi\nU:Name a colour.\n"


def test_helpers_templates_call():
    assert ChatTemplate('{{ strftime_now("%Y") }}').render([]) == str(datetime.now().year)
    assert ChatTemplate("{{ messages[0].content | tojson }}").render([{"role": "user", "content": "café <日本>"}]) \
        == '"café <日本>"'
    assert ChatTemplate("{{ {'b': 1, 'a': [2]} | tojson(indent=1) }}").render([]) == '{\n "b": 1,\n "a": [\n  2\n ]\n}'
    loop = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
    assert ChatTemplate(loop).render(CHAT) == "Hi"
    tagged = "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}"
    assert ChatTemplate(tagged).render(CHAT[:2]) == "HiHello!"


def test_extra_variables_reach_the_template():
    assert ChatTemplate("{{ tools | length }}").render([], tools=[{"name": "x"}]) == "1"


def test_raise_exception_gives_a_chat_template_error():
    template = ChatTemplate("{% if messages[0].role != 'system' %}{{ raise_exception('x needs a system turn') }}"
                            "{% endif %}")
    with pytest.raises(ChatTemplateError, match="chat template refused the chat: x needs a system turn"):
        template.render(CHAT)
    assert template.render([{"role": "system", "content": "s"}]) == ""
    assert issubclass(ChatTemplateError, ValueError)


def test_syntax_error_gives_a_readable_chat_template_error():
    with pytest.raises(ChatTemplateError, match=r"chat template does not compile: .*'endfor'.*\(line 1\)"):
        ChatTemplate("{% for m in messages %}{{ m.content }}")
    with pytest.raises(ChatTemplateError, match="chat template does not compile"):
        ChatTemplate("{{ messages[0] ")


def test_render_errors_name_the_template_and_the_reason(tiny):
    with pytest.raises(ChatTemplateError, match="chat template failed to render: ZeroDivisionError: .*by zero"):
        ChatTemplate("{{ 1 // 0 }}").render([])
    # a model whose own template is broken: found at compile time, with the model's template named
    with pytest.raises(ChatTemplateError, match="model's chat template"):
        render_chat(tiny, CHAT, template="{% if %}")


def test_the_sandbox_blocks_unsafe_and_mutating_code():
    with pytest.raises(ChatTemplateError, match="SecurityError"):
        ChatTemplate("{{ ''.__class__.__mro__ }}").render([])
    with pytest.raises(ChatTemplateError, match="SecurityError"):
        ChatTemplate("{{ messages.append({'role': 'x', 'content': 'y'}) }}").render(CHAT)


@pytest.mark.parametrize("messages, words", [
    ("hello", "messages must be a list"),
    ([("user", "hi")], r"messages\[0\] must be a dict"),
    ([{"content": "hi"}], r"messages\[0\] has no 'role'"),
    ([{"role": "user", "content": "hi"}, {"role": "user"}], r"messages\[1\] has no 'content'"),
    ([{"role": "user", "content": None}], r"messages\[0\]\['content'\] must be a string, got NoneType"),
    ([{"role": 3, "content": "x"}], r"messages\[0\]\['role'\] must be a string, got int"),
    ([{"role": "", "content": "x"}], r"messages\[0\]\['role'\] is empty"),
])
def test_bad_messages_are_refused_clearly(messages, words):
    with pytest.raises(ValueError, match=words):
        ChatTemplate().render(messages)


def test_rendering_does_not_change_the_callers_messages():
    chat = [dict(m) for m in CHAT]
    ChatTemplate().render(chat)
    assert chat == CHAT


# ---- templates are untrusted code: a budget, and real templates unchanged ----

# Written for these tests in the style of the models' published templates.
GEMMA_STYLE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] | trim + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}{% else %}{% set first = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first if loop.first else '') + message['content'] | trim }}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")
LLAMA3_STYLE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}{% if messages[0].role == 'system' %}"
    "{% set ns.system = messages[0].content | trim %}{% set messages = messages[1:] %}{% endif %}"
    "<|start_header_id|>system<|end_header_id|>\n\nToday Date: {{ strftime_now('%d %b %Y') | length > 0 }}\n"
    "{% if tools %}Tools:\n{% for t in tools %}{{ t | tojson(indent=4) }}\n\n{% endfor %}{% endif %}"
    "{{ ns.system }}<|eot_id|>{% for message in messages %}"
    "{{ '<|start_header_id|>' ~ message.role ~ '<|end_header_id|>\n\n' ~ message.content | trim ~ '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
LONG_CHAT = [{"role": "system", "content": "  Be brief, and kind.  "}] + [
    {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "déjà vu 日本 " * (i % 7) + "\n"}
    for i in range(41)]
TOOLS = [{"name": "get_weather", "parameters": {"city": {"type": "string", "description": "a city <name>"}}}]


def reference_render(source: str, messages, add_generation_prompt=True, **extra) -> str:
    """How templates rendered before the budget: the plain immutable sandbox with the same helpers."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, ct._GenerationTag])
    env.filters["tojson"] = ct._tojson
    env.globals.update(raise_exception=ct._raise_exception, strftime_now=ct._strftime_now)
    return env.from_string(source).render(bos_token="<s>", eos_token="</s>", **extra, messages=messages,
                                          add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize("name", ["chatml", "gemma", "llama3", "llama3-tools"])
def test_real_templates_render_as_before(name):
    source = {"chatml": CHATML_TEMPLATE, "gemma": GEMMA_STYLE}.get(name, LLAMA3_STYLE)
    extra = {"tools": TOOLS} if name == "llama3-tools" else {}
    for chat in (CHAT, LONG_CHAT):
        out = ChatTemplate(source, "<s>", "</s>").render(chat, **extra)
        assert out == reference_render(source, chat, **extra) and len(out) > 50
    if name == "llama3-tools":
        assert '"description": "a city <name>"' in out


def test_smollm2_template_renders_as_before(native, smollm2):
    with Model.from_file(smollm2, native) as model:
        template = ChatTemplate.for_model(model)
        for chat in (CHAT, LONG_CHAT):
            expected = reference_render(model.chat_template, chat).replace("<s>", template.bos_token)
            assert template.render(chat) == expected


def test_long_documents_still_render():
    """The budget grows with the chat's own text: a 3 MB document is not "too large"."""
    doc = "word " * 600_000
    assert ChatTemplate().render([{"role": "user", "content": doc}]).count("word") == 600_000


def test_jinja_powers_are_left_associative():
    # unlike Python, Jinja reads 9**9**9 as (9**9)**9: a 78-digit number, harmless, rendered as before
    assert ChatTemplate("{{ 9**9**9 }}").render([]) == str((9**9)**9) == reference_render("{{ 9**9**9 }}", [])


HOSTILE = {
    "string repetition": "{{ 'x' * 10**10 }}",
    "list repetition": "{{ [1, 2] * 10**9 }}",
    "repeated message list": "{{ (messages * 10**8) | length }}",
    "power": "{{ 9**(9**9) }}",
    "growing power": "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
    "huge range": "{% for i in range(10**9) %}{% endfor %}",
    "nested ranges": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "deep macro recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "branching macro recursion": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
                                 "{{ f(40) }}",
    "huge output via loops": "{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}",
    "huge captured output": "{% set x %}{% for i in range(99999) %}{{ 'y' * 99999 }}{% endfor %}{% endset %}"
                            "{{ x | length }}",
    "doubling with ~": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                       "{% endfor %}",
    "doubling lists with +": "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}"
                             "{% endfor %}",
    "center": "{{ 'x'.center(999999999) }}",
    "center filter": "{{ 'x' | center(999999999) }}",
    "percent width": "{{ '%0999999999d' % 1 }}",
    "format width": "{{ '{:>999999999}'.format(1) }}",
    "format filter": "{{ '%0999999999d' | format(1) }}",
    "replace": "{{ ('a' * 1000) | replace('a', 'a' * 99999) }}",
    "replace method": "{{ ('a' * 1000).replace('a', 'a' * 99999) }}",
    "join": "{{ range(99999) | join('x' * 99999) }}",
    "indent": "{{ ('a\\n' * 99999) | indent('x' * 9999) }}",
    "long-running loop": "{% for i in range(99999) %}{% for m in messages %}{% for c in m.content %}"
                         "{% endfor %}{% endfor %}{% endfor %}",
}


def test_hostile_templates_fail_fast():
    """Each hostile template, rendered in a child process (address space capped at 2 GiB, so an unguarded
    allocation fails instead of swapping), must give a ChatTemplateError within a few seconds."""
    script = f"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
sys.path.insert(0, {str(REPO / "py")!r})
from pocketmind.chat_template import ChatTemplate, ChatTemplateError
chat = [{{"role": "user", "content": "x" * 300}}] * 40
for name, source in json.loads(sys.stdin.read()).items():
    t = time.monotonic()
    try:
        ChatTemplate(source).render(chat)
        result = "rendered"
    except ChatTemplateError as e:
        result = str(e)
    except BaseException as e:
        result = "other " + type(e).__name__
    print(json.dumps([name, result, time.monotonic() - t]), flush=True)
"""
    try:
        proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(HOSTILE), capture_output=True,
                              text=True, timeout=30 + 3 * len(HOSTILE))
        lines = proc.stdout
    except subprocess.TimeoutExpired as e:
        lines = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    results = {name: (message, seconds) for name, message, seconds in map(json.loads, lines.splitlines())}
    assert list(results) == list(HOSTILE), f"hung at {list(HOSTILE)[len(results)]!r}"
    for name, (message, seconds) in results.items():
        assert message.startswith("the model's chat template "), (name, message)
        assert "failed to render" not in message, (name, message)  # stopped by the budget, not by a crash
        assert seconds < 4.0, (name, seconds)  # the deadline is 2 s; most stop in milliseconds


def test_moderate_recursion_and_loops_still_render():
    nested = "{% macro f(n) %}{% if n %}({{ f(n - 1) }}){% endif %}{% endmacro %}{{ f(30) }}"
    assert ChatTemplate(nested).render([]) == "(" * 30 + ")" * 30
    loops = "{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}{{ range(10) | join(',') }}"
    assert ChatTemplate(loops).render([]) == "0,1,2,3,4,5,6,7,8,9"


def test_render_parts_compiles_no_pattern_per_call():
    """Each render_parts uses a new random placeholder name; a regular expression built from it was compiled and
    kept in re's cache on every answer (seen in the chat page: one more Python object per question,
    tests/test_browser_memory.py). The patterns are fixed now, so many renders add none."""
    import gc
    import re

    template = ChatTemplate(CHATML_TEMPLATE)

    def patterns() -> int:
        gc.collect()
        return sum(isinstance(o, re.Pattern) for o in gc.get_objects())

    template.render_parts(CHAT)
    before = patterns()
    for _ in range(50):
        rendered = template.render_parts(CHAT)
    assert patterns() == before
    assert rendered.exact and [p for p, content in rendered.parts if content] == [m["content"] for m in CHAT]


def test_render_parts_skips_a_placeholder_with_another_name_in_the_template():
    """A template whose own text looks like a placeholder (another name) right before a message: that text stays
    template text and the message is still found."""
    fake = "@0123456789abcdef:7"
    template = ChatTemplate("{% for m in messages %}" + fake + "{{ m['content'] }}@{% endfor %}")
    rendered = template.render_parts([{"role": "user", "content": "Hi"}])
    assert rendered.text == fake + "Hi@"
    assert [p for p, content in rendered.parts if content] == ["Hi"]
    assert "".join(p for p, _ in rendered.parts) == rendered.text
