"""Chat templates: the GGUF's own Jinja template in the sandbox, ChatML fallback, clear errors."""
from __future__ import annotations

from datetime import datetime

import pytest

from pocketmind import Model
from pocketmind.chat_template import CHATML_TEMPLATE, ChatTemplate, ChatTemplateError, render_chat
from tiny_gguf import write_tiny_llama

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
