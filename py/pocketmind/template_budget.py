"""A budget for rendering an untrusted Jinja template: what it may build, how many loop turns, how long.

A chat template comes from the GGUF file and renders synchronously in the page's worker, so `{{ 'x' * 10**10 }}`
or `{{ 9**(9**9) }}` would hang the page. jinja2's sandbox lets us intercept the operators and calls that can build
large values; loops and `{{ }}` output are routed through the budget too (loops by rewriting the
parsed template, output through jinja2's `finalize` hook). Everything checks a wall-clock deadline as it goes.
Limits are generous for real templates (which render a chat in milliseconds) and fail a hostile one in well under
a second or two.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

SECONDS = 2.0  # wall-clock time for one render
MAX_SIZE = 1_000_000  # characters or items in any one value or the output, plus twice the chat's own text
MAX_ITERATIONS = 100_000  # loop turns in one render...
MAX_TEMPLATE_WORK = 200_000_000  # ...and fewer for long templates: turns x template length (literal text per turn)
MAX_DEPTH = 64  # calls inside calls (macros calling macros): stops well before Python's or the wasm stack's limit
MAX_INT_BITS = 4096  # integers a template computes (no template needs more; 9**(9**9) has over a billion bits)
# a format width/precision of 7+ digits ("%0999999999d", "{:>9999999}") builds a huge string in one call
_HUGE_FORMAT_WIDTH = re.compile(r"\d{7,}")


class TemplateTooCostly(Exception):
    """The template exceeded its budget; the message completes "the model's chat template ..."."""


_current: contextvars.ContextVar[Budget] = contextvars.ContextVar("template_budget")


class Budget:
    """What one render (or one compile, which folds constants) may still spend."""

    def __init__(self, source: str, input_chars: int, seconds: float = SECONDS):
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.max_size = MAX_SIZE + 2 * input_chars
        self.iterations_left = min(MAX_ITERATIONS, MAX_TEMPLATE_WORK // max(1, len(source)))
        self.output_left = self.max_size  # characters written by {{ }} anywhere (also into {% set %} blocks)
        self.depth = 0

    @contextlib.contextmanager
    def active(self):
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateTooCostly(f"took longer than {self.seconds:g} s to render")

    def sized(self, value: Any) -> Any:
        """value, if it is not larger than a template may build."""
        if isinstance(value, (str, bytes, list, tuple, dict, set)) and len(value) > self.max_size:
            raise TemplateTooCostly(f"builds a value of {len(value)} items (at most {self.max_size})")
        return value

    def spend_output(self, n: int) -> None:
        self.tick()
        self.output_left -= n
        if self.output_left < 0:
            raise TemplateTooCostly(f"writes more than {self.max_size} characters")

    def loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.tick()
            self.iterations_left -= 1
            if self.iterations_left < 0:
                raise TemplateTooCostly("runs too many loop iterations")
            yield item

    def output(self, pieces: Iterable[str]) -> Iterator[str]:
        """The rendered pieces, as long as they stay within the budget (the template's literal text counts too)."""
        total = 0
        for piece in pieces:
            self.tick()
            total += len(piece)
            if total > self.max_size:
                raise TemplateTooCostly(f"writes more than {self.max_size} characters")
            yield piece


def current() -> Budget:
    budget = _current.get(None)
    if budget is None:
        raise RuntimeError("a budgeted template ran outside Budget.active()")
    return budget


def _check_sizes(args: Iterable[Any]) -> None:
    """Refuse size-like arguments (widths, counts) no template needs: 'x'.center(10**9) would build 1 GB at once."""
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > current().max_size:
            raise TemplateTooCostly(f"passes a size of {arg} (at most {current().max_size})")


def _check_format(fmt: Any) -> None:
    if isinstance(fmt, str) and _HUGE_FORMAT_WIDTH.search(fmt):
        raise TemplateTooCostly("formats with a huge width")


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation before it runs if its result would be too large."""
    budget = current()
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if _length(seq) is not None and _is_int(n) and _length(seq) * n > budget.max_size:
                raise TemplateTooCostly(f"repeats a value {n} times")
        if _is_int(left) and _is_int(right) and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
            raise TemplateTooCostly("computes a huge number")
    elif operator == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1 \
                and (abs(left).bit_length() - 1) * right > MAX_INT_BITS:
            raise TemplateTooCostly("computes a huge number")
    elif operator == "+":
        if _length(left) is not None and _length(right) is not None \
                and _length(left) + _length(right) > budget.max_size:
            raise TemplateTooCostly(f"builds a value of more than {budget.max_size} items")
    elif operator == "%" and isinstance(left, str):
        _check_format(left)
        _check_sizes(right if isinstance(right, tuple) else (right,))


def _check_growth(name: str, value: Any, args: list[Any]) -> None:
    """The string operations whose result can be far larger than their inputs (the filters, and the str methods of
    the same names), estimated before they run: `'a' * 1000 | replace('a', 'a' * 999999)` would build 1 GB."""
    budget = current()
    if name == "replace" and isinstance(value, str) and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
        old, new = args[0], args[1]
        estimate = len(value) + (len(value) // max(1, len(old)) + 1) * max(0, len(new) - len(old))
    elif name == "join" and isinstance(value, str) and args and hasattr(args[0], "__len__"):  # sep.join(items)
        estimate = len(value) * len(args[0])
    elif name == "join" and hasattr(value, "__len__") and args and isinstance(args[0], str):  # items | join(sep)
        estimate = len(args[0]) * len(value)
    elif name == "indent" and isinstance(value, str) and args:
        width = args[0] if isinstance(args[0], str) else " " * args[0] if _is_int(args[0]) else ""
        estimate = len(value) + (value.count("\n") + 1) * len(width)
    elif name == "format":
        _check_format(value)
        return
    else:
        return
    if estimate > budget.max_size:
        raise TemplateTooCostly(f"would build a value of about {estimate} characters with {name}")


class _RouteThroughBudget(NodeTransformer):
    """Rewrites a parsed template so every for-loop iterates through Budget.loop and every `~` concatenation is
    size-checked: both become calls of environment methods, which the sandbox routes through call()."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("budget_loop"), [node.iter], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("budget_sized"), [node], [], None, None)


def _finalize(value: Any) -> Any:
    text = value if isinstance(value, str) else str(value)
    current().spend_output(len(text))
    return text


class BudgetEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every operation that can build a large value or take long checked against the
    active Budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **kwargs: Any):
        super().__init__(finalize=_finalize, **kwargs)
        self.globals["range"] = self.budget_range
        for name, fn in list(self.filters.items()):
            self.set_filter(name, fn)

    def set_filter(self, name: str, fn: Any) -> None:
        """Install a filter whose arguments and result are checked (functools.wraps keeps jinja2's pass_context
        and similar markers)."""
        passes = hasattr(fn, "jinja_pass_arg")  # @pass_context and friends: the value is the second argument

        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            current().tick()
            value, rest = args[int(passes)], list(args[int(passes) + 1:]) + list(kwargs.values())
            _check_sizes(rest)
            _check_growth(name, value, rest)
            return current().sized(fn(*args, **kwargs))

        self.filters[name] = checked

    def compile_guarded(self, source: str):
        return self.from_string(_RouteThroughBudget().visit(self.parse(source)))

    # ---- the sandbox's hooks ----

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        current().tick()
        _check_binop(operator, left, right)
        return current().sized(super().call_binop(context, operator, left, right))

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja2's own signature)
        current().tick()
        _check_sizes(list(args) + list(kwargs.values()))
        if isinstance(getattr(__obj, "__self__", None), str):  # a str method: "x".replace(...), ", ".join(...)
            _check_growth(getattr(__obj, "__name__", ""), __obj.__self__, list(args))
        budget = current()
        if budget.depth >= MAX_DEPTH:
            raise TemplateTooCostly("recurses too deeply")
        budget.depth += 1
        try:
            return budget.sized(super().call(__context, __obj, *args, **kwargs))
        finally:
            budget.depth -= 1

    def wrap_str_format(self, value: Any):
        _check_format(getattr(value, "__self__", None))
        return super().wrap_str_format(value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        current().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        current().tick()
        return super().getitem(obj, argument)

    # ---- what the rewritten template calls ----

    @staticmethod
    def budget_loop(iterable: Iterable[Any]) -> Iterator[Any]:
        return current().loop(iterable)

    @staticmethod
    def budget_sized(value: Any) -> Any:
        return current().sized(value)

    @staticmethod
    def budget_range(*args: int) -> range:
        values = range(*args)
        if len(values) > MAX_ITERATIONS:
            raise TemplateTooCostly(f"asks for a range of {len(values)} numbers (at most {MAX_ITERATIONS})")
        return values
