"""Rendering a chat with the model's own Jinja chat template (`tokenizer.chat_template`), as Hugging Face does.

The template is untrusted code from the GGUF file. It runs in jinja2's immutable sandbox (no attribute tricks, no
mutation of the chat), and under a budget (template_budget.py), because rendering is synchronous in the page's
worker: a template that tries to build something huge or to run for long fails fast with a ChatTemplateError.
Models without a template get ChatML.
"""
from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes

from .template_budget import Budget, BudgetEnvironment, TemplateTooCostly

# render_parts' placeholders, "@<name>:<message index>@" (name: secrets.token_hex(8)), bare or padded
_MARK = re.compile(r"@(?P<name>[0-9a-f]{16}):(?P<i>\d+)@")
_PADDED_MARK = re.compile(r"(?P<left> \n)?@(?P<name>[0-9a-f]{16}):(?P<i>\d+)@(?P<right>\n )?")

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ChatTemplateError(ValueError):
    """The model's chat template could not be compiled or rendered."""


class _TemplateRaised(Exception):
    """What raise_exception() throws, so its text is reported as the template's own message."""


def _raise_exception(message: str = "") -> None:
    raise _TemplateRaised(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    # jinja2's own tojson escapes HTML characters and non-ASCII text, which would change the prompt
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (used by some templates to mark assistant text): renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body).set_lineno(lineno)


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    env = BudgetEnvironment(trim_blocks=True, lstrip_blocks=True,
                            extensions=[jinja2.ext.loopcontrols, _GenerationTag])
    env.set_filter("tojson", _tojson)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        with Budget(source, input_chars=0).active():  # constant folding runs template code at compile time
            return env.compile_guarded(source)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"the model's chat template does not compile: {e.message} (line {e.lineno})") from e
    except TemplateTooCostly as e:
        raise ChatTemplateError(f"the model's chat template {e}") from e
    except RecursionError as e:
        raise ChatTemplateError("the model's chat template does not compile: it nests too deeply") from e
    except Exception as e:
        raise ChatTemplateError(f"the model's chat template does not compile: {e}") from e


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """Check a chat is a list of {role: str, content: str, ...} and return plain-dict copies."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got {type(message).__name__}")
        for key in ("role", "content"):
            if key not in message:
                raise ValueError(f"messages[{i}] has no {key!r}")
            if not isinstance(message[key], str):
                raise ValueError(f"messages[{i}][{key!r}] must be a string, got {type(message[key]).__name__}")
        if not message["role"]:
            raise ValueError(f"messages[{i}]['role'] is empty")
        out.append(dict(message))
    return out


@dataclass(frozen=True)
class RenderedChat:
    """A rendered chat, and the same text in parts: (text, True) for a message's content, (text, False) for what
    the template wrote itself. `exact`: the parts add up to `text`. Otherwise the template changed contents in a way
    that could not be told apart from its own text (not just trimming), and the parts hold the template's text with
    each content as written (see ChatTemplate.render_parts)."""

    text: str
    parts: tuple[tuple[str, bool], ...]
    exact: bool


class ChatTemplate:
    """A compiled chat template with the model's BOS/EOS texts."""

    def __init__(self, source: str | None = None, bos_token: str = "", eos_token: str = ""):
        self.source = CHATML_TEMPLATE if source is None else source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._template = _compile(self.source)

    @classmethod
    def for_model(cls, model, source: str | None = None) -> ChatTemplate:
        """The model's template (or `source` when given, or ChatML when the model has none)."""
        def text(token: int) -> str:
            return model.token_bytes(token, special=True).decode("utf-8", errors="replace") if token >= 0 else ""

        return cls(source if source is not None else model.chat_template, text(model.bos), text(model.eos))

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **extra: Any) -> str:
        messages = validate_messages(messages)
        variables = {"bos_token": self.bos_token, "eos_token": self.eos_token, **extra,
                     "messages": messages, "add_generation_prompt": add_generation_prompt}
        budget = Budget(self.source, input_chars=sum(len(m["content"]) for m in messages))
        try:
            with budget.active():
                return "".join(budget.output(self._template.generate(**variables)))
        except _TemplateRaised as e:
            raise ChatTemplateError(f"the model's chat template refused the chat: {e}") from e
        except TemplateTooCostly as e:
            raise ChatTemplateError(f"the model's chat template {e}") from e
        except RecursionError as e:
            raise ChatTemplateError("the model's chat template recurses too deeply") from e
        except Exception as e:
            raise ChatTemplateError(f"the model's chat template failed to render: {type(e).__name__}: {e}") from e


    def render_parts(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                     **extra: Any) -> RenderedChat:
        """Render, and tell the template's text from the messages' contents (so that only the template's markup
        may become special tokens).

        Each content is replaced by a placeholder with a random name that no content contains, padded with
        whitespace on both sides: a template that trims contents (`| trim`, `.strip()`) removes the padding, which
        tells us to trim the real content the same way. The parts are checked against a plain render; when they
        differ (a template that slices, escapes or rewrites contents) the parts come from a render with bare
        placeholders and the contents as written, and `exact` is False.
        """
        messages = validate_messages(messages)
        text = self.render(messages, add_generation_prompt, **extra)
        name = secrets.token_hex(8)
        while name in text or any(name in m["content"] for m in messages):  # as good as never
            name = secrets.token_hex(8)
        marks = [f"@{name}:{i}@" for i in range(len(messages))]

        def render_with(pad: str) -> str:
            stand_ins = [{**m, "content": pad + mark + pad[::-1]} for m, mark in zip(messages, marks)]
            return self.render(stand_ins, add_generation_prompt, **extra)

        def split(rendered: str, pattern: re.Pattern, content) -> list[tuple[str, bool]]:
            # the patterns match any name (compiled once: a pattern per random name would fill re's cache, one
            # per answer); a mark with another name is skipped one character on, so it hides none of ours
            parts, pos, at = [], 0, 0
            while (hit := pattern.search(rendered, at)) is not None:
                if hit["name"] != name:
                    at = hit.start() + 1
                    continue
                parts += [(rendered[pos:hit.start()], False), (content(hit), True)]
                pos = at = hit.end()
            return [p for p in parts + [(rendered[pos:], False)] if p[0]]

        def trimmed(hit: re.Match) -> str:
            content = messages[int(hit["i"])]["content"]
            content = content if hit["left"] else content.lstrip()
            return content if hit["right"] else content.rstrip()

        parts = split(render_with(" \n"), _PADDED_MARK, trimmed)
        if "".join(p for p, _ in parts) == text:
            return RenderedChat(text, tuple(parts), True)
        parts = split(render_with(""), _MARK, lambda hit: messages[int(hit["i"])]["content"])
        return RenderedChat(text, tuple(parts), False)


def render_chat(model, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                template: str | None = None, **extra: Any) -> str:
    """Render messages with the model's chat template (or `template`)."""
    return ChatTemplate.for_model(model, template).render(messages, add_generation_prompt, **extra)
