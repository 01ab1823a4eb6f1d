"""A Jinja2 sandbox that bounds what one render may cost, for templates staff edit.

The threat: a template is edited by staff, not reviewed like code, and a dispatcher renders it
thousands of times. A mistake or a hostile edit must end that render in an exception, never
crash the process nor exhaust its memory or its time. Jinja's sandbox guards attributes, not
resources, so each render runs with a ``Budget``:

- every value a template builds (operator, call, filter, test, literal, slice, ``~``, captured
  block) must fit in ``MAX_VALUE`` characters when written out, and all of them together in
  ``MAX_ALLOCATED``: everything a render holds was built during it, so this bounds its memory.
  Operations that can build far more than they are given (``*``, ``**``, ``%``, ``format``,
  ``center``, ``replace``, ``join``, ``indent``, ``wordwrap``, ``expandtabs``…) are refused
  *before* they run, from a bound computed on their arguments; the rest are checked on their
  result. Numbers stay within ``MAX_INT_BITS`` bits, size arguments (widths) within ``MAX_VALUE``;
- loop iterations, calls, filters, tests, includes and intercepted operators are steps, at most
  ``MAX_STEPS``; ``range`` hands out at most ``MAX_RANGE_ITEMS`` numbers in all (Jinja caps
  each range; nested loops would multiply that);
- a deadline of ``RENDER_SECONDS`` is checked at every step, for steps that are each slow;
- the letter's blocks together are at most ``MAX_LETTER`` characters (the renderer collects
  them with ``collect``).

What the sandbox does not intercept (loops, ``~``, slices, literals, capture buffers) the
compiler routes through the environment (``LetterCodeGenerator`` and ``_CompiledHooks``). Every
unbounded repetition goes through a step (a loop, a call or an include), so the time between two
checks is bounded by the template's length, and no tracing is needed. A template using none of
these hooks (the shipped letters only print variables) pays ~1-2 µs a render, for the budget and
for counting its output as it streams. ``pprint``, ``tojson`` and ``lipsum`` are removed: their
output grows with nesting depth, not size, and a plain-text letter has no use for them.
"""

from __future__ import annotations

import math
import re
import string
import time
import types
from collections import deque
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, Sized, ValuesView
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import fields
from functools import update_wrapper
from typing import TYPE_CHECKING, Any, TypeVar, cast

from jinja2 import Template, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.environment import TemplateModule
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MAX_LETTER = 64 * 1024  # characters, subject and body: a letter, not a book
MAX_VALUE = 128 * 1024  # characters of any one value a template builds, written out
MAX_INT_BITS = 4096
MAX_ALLOCATED = 1024 * 1024  # characters of all the values and captured output a render builds
MAX_STEPS = 100_000
MAX_RANGE_ITEMS = 100_000
RENDER_SECONDS = 1.0  # a letter renders in ~25 µs: only a runaway template comes near


class LimitExceeded(Exception):
    """A template went past one of the module's limits."""


# -- views: the objects templates read ------------------------------------------------------------

_VIEWS: dict[type, frozenset[str]] = {}
View = TypeVar("View", bound="type[DataclassInstance]")


def template_view(cls: View) -> View:
    """Lets templates read this frozen dataclass's fields, plain values, and nothing else (no
    methods, no dunders). Deciding that from a dict lookup, rather than by the sandbox's general
    checks, takes a tenth of the time: the checks were most of a render."""
    _VIEWS[cls] = frozenset(f.name for f in fields(cls))
    return cls


# -- the per-render budget ------------------------------------------------------------------------


class Budget:
    """What one render may still spend: a renderer sets a new one as ``CURRENT_BUDGET`` for each
    render (not with a context manager, whose two calls are a measurable part of a render)."""

    __slots__ = ("characters", "deadline", "range_items", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.range_items = MAX_RANGE_ITEMS
        self.characters = MAX_ALLOCATED
        self.deadline = time.monotonic() + RENDER_SECONDS

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise LimitExceeded(f"more than {MAX_STEPS:,} steps (loop iterations, calls, filters, includes)")
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"rendering took longer than {RENDER_SECONDS:g} s")


# None outside a render: when Jinja folds constants at compile time, sizes are still checked.
CURRENT_BUDGET: ContextVar[Budget | None] = ContextVar("render_budget", default=None)


def _step() -> None:
    budget = CURRENT_BUDGET.get()
    if budget is not None:
        budget.step()


def _charge(characters: int) -> None:
    """Count what a render builds: all it holds at any time was built during it, so this bounds
    its memory, however the values are kept (variables, buffers, lists of repeated parts)."""
    budget = CURRENT_BUDGET.get()
    if budget is not None:
        budget.characters -= characters
        if budget.characters < 0:
            raise LimitExceeded(f"more than {MAX_ALLOCATED:,} characters of values built in all")


def _budget_range(*args: int) -> range:
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:  # more items than a C integer holds
        count = MAX_RANGE_ITEMS + 1
    budget = CURRENT_BUDGET.get()
    left = (budget.range_items if budget else MAX_RANGE_ITEMS) - count
    if left < 0:
        raise LimitExceeded(f"ranges of more than {MAX_RANGE_ITEMS:,} numbers in all")
    if budget:
        budget.range_items = left
    return numbers


# -- sizes ----------------------------------------------------------------------------------------

_COLLECTIONS = (list, tuple, set, frozenset, deque, KeysView, ValuesView, ItemsView)


def _size(value: Any, limit: int = MAX_VALUE) -> int:
    """About ``len(str(value))``, shared parts counted each time they would be written.

    Stops counting once past ``limit``, so it costs at most ``limit`` steps whatever the value.
    """
    if type(value) is str:
        return len(value)
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item) + 2
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, _COLLECTIONS):
            total += 2 * len(item) + 2
            if total <= limit:
                pending.extend(item)
        elif isinstance(item, Mapping):
            total += 4 * len(item) + 2
            if total <= limit:
                pending.extend(item.keys())
                pending.extend(item.values())
        elif isinstance(item, Namespace):
            total += 16
            pending.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif type(item) in _VIEWS:
            total += 32
            pending.extend(getattr(item, name) for name in _VIEWS[type(item)])
        else:  # floats, dates, ranges, generators, macros: short when written
            total += 32
    return total


def _too_big(what: str) -> LimitExceeded:
    return LimitExceeded(f"{what} would make a value of more than {MAX_VALUE:,} characters")


def _limit(bound: int, what: str) -> None:
    if bound > MAX_VALUE:
        raise _too_big(what)


def _spend(size: int, what: str) -> None:
    """A value of ``size`` characters, refused past ``MAX_VALUE``, else charged to the render."""
    _limit(size, what)
    _charge(size)


def _fits(value: Any, what: str) -> Any:
    _spend(_size(value), what)
    return value


def _cap_ints(values: Iterable[Any], what: str) -> None:
    """Size arguments (widths, lengths, counts) beyond any letter's need are refused outright."""
    for value in values:
        if isinstance(value, int) and abs(value) > MAX_VALUE:
            shown = value if value.bit_length() < 64 else f"a {value.bit_length()}-bit number"
            raise LimitExceeded(
                f"{what}: {shown} is more than a template may ask for ({MAX_VALUE:,} characters)"
            )


def collect(chunks: Iterable[str], room: int, what: str) -> str:
    """Join output as it comes, stopping as soon as it is too long (a loop may yield forever)."""
    parts = []
    for chunk in chunks:
        room -= len(chunk)
        if room < 0:
            raise LimitExceeded(what)
        parts.append(chunk)
    return "".join(parts)


def _bounded(items: Iterable[Any], what: str) -> Iterator[Any]:
    """The items of a lazy sequence, refused once they add up to more than ``MAX_VALUE``."""
    total = 0
    for item in items:
        total += _size(item)
        if total > MAX_VALUE:
            raise _too_big(what)
        yield item


# -- bounds of the operations that can build much more than they are given ------------------------

_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMATTER = string.Formatter()
_FLOAT_DIGITS = 320  # '%f' of the largest float


def _arguments_size(values: list[Any]) -> int:
    floats = any(isinstance(v, float) for v in values)
    return _size(values) + (_FLOAT_DIGITS if floats else 0)


def _widest(values: list[Any]) -> int:
    """The largest integer argument: a ``*`` width or a nested ``{}`` field may take it."""
    return max((v for v in values if isinstance(v, int)), default=0)


def _printf_bound(fmt: str | bytes, args: Any) -> int:
    """Longest ``fmt % args``: each field is at most its width or precision plus any argument."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    values = list(args.values() if isinstance(args, Mapping) else args if isinstance(args, tuple) else [args])
    widest = _widest(values)
    fields = _PRINTF_FIELD.findall(text)
    numbers = [widest if n == "*" else int(n) for field in fields for n in field if n]
    return len(text) + len(fields) * (max(numbers, default=0) + _arguments_size(values))


def _format_bound(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """Longest ``fmt.format(*args, **kwargs)``; nested fields (``{:{}}``) take widths from the arguments."""
    values = [*args, *kwargs.values()]
    widest = _widest(values)
    each = _arguments_size(values)
    total = 0
    for literal, field, spec, _ in _FORMATTER.parse(fmt):
        total += len(literal)
        if field is not None:
            numbers = [int(n) for n in re.findall(r"\d+", spec or "")]
            total += max([*numbers, widest if "{" in (spec or "") else 0]) + each
    return total


def _replace_bound(text: str | bytes, old: str | bytes, new: str | bytes, count: int | None) -> int:
    hits = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * len(new)


def _translate_bound(text: str | bytes, table: Any) -> int:
    if table is None or isinstance(table, str | bytes | bytearray):
        return len(text)
    replacements = table.values() if isinstance(table, Mapping) else table
    if not isinstance(replacements, Iterable):
        return len(text) * MAX_VALUE  # nothing we can measure: refuse
    widths = [len(r) if isinstance(r, str | bytes) else 1 for r in replacements]
    return len(text) * max(widths, default=1)


def _tab(text: str | bytes) -> str | bytes:
    return "\t" if isinstance(text, str) else b"\t"


def _pad_bound(text: str | bytes, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    width: int = args[0]
    return max(len(text), width)


Bound = Callable[[Any, tuple[Any, ...], dict[str, Any]], int]

# str and bytes methods that can return far more than their receiver and arguments.
_METHOD_BOUNDS: dict[str, Bound] = {
    **dict.fromkeys(("center", "ljust", "rjust", "zfill"), _pad_bound),
    "expandtabs": lambda s, a, k: len(s) + s.count(_tab(s)) * (a[0] if a else k.get("tabsize", 8)),
    "replace": lambda s, a, k: _replace_bound(s, a[0], a[1], a[2] if len(a) > 2 else k.get("count")),
    "translate": lambda s, a, k: _translate_bound(s, a[0] if a else None),
    "join": lambda s, a, k: _size(a[0]) + len(a[0]) * len(s),
    "encode": lambda s, a, k: 10 * len(s),  # 'unicode_escape' writes \U0001f600 for one character
    "hex": lambda s, a, k: 3 * len(s),
}

_MALFORMED = (IndexError, KeyError, TypeError, ValueError, AttributeError)


def _check_bound(bound: Callable[[], int], what: str) -> None:
    try:
        estimate = bound()
    except _MALFORMED:
        return  # a malformed call: the operation itself will say what is wrong
    _limit(estimate, what)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    both_ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**":
        if both_ints and right > 0 and abs(left) > 1 and right * math.log2(abs(left)) > MAX_INT_BITS:
            raise LimitExceeded(f"'**' would make a number of more than {MAX_INT_BITS} bits")
    elif operator == "*":
        if both_ints:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise LimitExceeded(f"'*' would make a number of more than {MAX_INT_BITS} bits")
        elif isinstance(left, int) or isinstance(right, int):
            count, other = (left, right) if isinstance(left, int) else (right, left)
            if count > 0 and not isinstance(other, float):
                _limit(_size(other, MAX_VALUE // count) * count, "'*'")
    elif operator == "%":
        if isinstance(left, str | bytes):
            _check_bound(lambda: _printf_bound(left, right), "'%'")
    elif operator == "+" and not (isinstance(left, int | float) and isinstance(right, int | float)):
        _limit(_size(left) + _size(right), "'+'")


def _is_method(obj: Any) -> bool:
    """A bound method, built in or not (Markup wraps str's methods in Python functions)."""
    return isinstance(obj, types.BuiltinMethodType | types.MethodType) and not isinstance(
        obj.__self__, types.ModuleType
    )


def _check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Checks a call of a bound method; returns its arguments, lazy sequences made lists."""
    receiver, name = method.__self__, method.__name__
    _cap_ints((*args, *kwargs.values()), name)
    args = tuple(list(_bounded(a, name)) if isinstance(a, Iterator | range) else a for a in args)
    bound = _METHOD_BOUNDS.get(name)
    if bound is not None and isinstance(receiver, str | bytes | bytearray):
        _check_bound(lambda: bound(receiver, args, kwargs), name)
    return args


def _check_format(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``str.format`` and ``format_map``, reached through the sandbox's wrapper."""
    if method.__name__ == "format_map":
        _check_bound(lambda: _format_bound(method.__self__, (), args[0]), "format_map")
    else:
        _check_bound(lambda: _format_bound(method.__self__, args, kwargs), "format")


# -- filters and tests ----------------------------------------------------------------------------


def _filter_text(data: list[Any], index: int, kwargs: dict[str, Any], name: str, default: Any) -> Any:
    return data[index] if len(data) > index else kwargs.get(name, default)


def _indent_bound(data: list[Any], kwargs: dict[str, Any]) -> int:
    text, width = str(data[0]), _filter_text(data, 1, kwargs, "width", 4)
    pad = len(width) if isinstance(width, str) else width
    return len(text) + (text.count("\n") + 1) * pad


def _wordwrap_bound(data: list[Any], kwargs: dict[str, Any]) -> int:
    text, wrap = str(data[0]), _filter_text(data, 3, kwargs, "wrapstring", None)
    return len(text) + (len(text) + 1) * len("\n" if wrap is None else str(wrap))


def _join_bound(data: list[Any], kwargs: dict[str, Any]) -> int:
    values, separator = data[0], str(_filter_text(data, 1, kwargs, "d", ""))
    return _size(values) + (len(values) if isinstance(values, Sized) else 0) * len(separator)


def _numbers_only(data: list[Any], kwargs: dict[str, Any]) -> int:
    if not isinstance(_filter_text(data, 2, kwargs, "start", 0), int | float):
        # Adding lists or strings copies the total at every item: quadratic, refused.
        raise LimitExceeded("sum adds numbers only")
    return 0


_FILTER_BOUNDS: dict[str, Callable[[list[Any], dict[str, Any]], int]] = {
    "indent": _indent_bound,
    "wordwrap": _wordwrap_bound,
    "replace": lambda d, k: _replace_bound(
        str(d[0]), str(d[1]), str(d[2]), _filter_text(d, 3, k, "count", None)
    ),
    "format": lambda d, k: _printf_bound(str(d[0]), k or tuple(d[1:])),
    "join": _join_bound,
    "sum": _numbers_only,
}
# Filters whose integer arguments are sizes (the rest take numbers as data).
_SIZED_FILTERS = frozenset({"batch", "center", "indent", "round", "slice", "truncate", "urlize", "wordwrap"})
# Filters that hold every item of their input at once.
_HOARDING_FILTERS = frozenset({"list", "join", "sort", "unique", "reverse", "slice", "groupby", "sum"})


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if hasattr(func, "jinja_pass_arg") else 0  # the context or environment Jinja passes first
    bound = _FILTER_BOUNDS.get(name)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        data = list(args[skip:])
        if name in _SIZED_FILTERS:
            _cap_ints((*data[1:], *kwargs.values()), name)
        if data and name in _HOARDING_FILTERS and isinstance(data[0], Iterator | range):
            # join's bound needs the count of its items, so it gets them as a list
            data[0] = list(_bounded(data[0], name)) if name == "join" else _bounded(data[0], name)
        if bound is not None:
            _check_bound(lambda: bound(data, kwargs), name)
        return _fits(func(*args[:skip], *data, **kwargs), name)

    return update_wrapper(guarded, func)


def _guard_test(func: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        return func(*args, **kwargs)

    return update_wrapper(guarded, func)


# -- the compiler and what its code calls ---------------------------------------------------------


def _is_guarded(node: nodes.Node) -> bool:
    return (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.EnvironmentAttribute)
        and node.node.name == "loop_guard"
    )


class LetterCodeGenerator(CodeGenerator):
    """Jinja's compiler, routing what the sandbox leaves alone through ``_CompiledHooks``:
    loops, ``~``, slices, capture buffers and literals (nested literals can share parts and grow
    exponentially)."""

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if not _is_guarded(node.iter):  # iterate over environment.loop_guard(iterable) instead
            guard = nodes.EnvironmentAttribute("loop_guard", lineno=node.iter.lineno)
            node.iter = nodes.Call(guard, [node.iter], [], None, None, lineno=node.iter.lineno)
        super().visit_For(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_values((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        # A slice builds a new value; an item is one the template already holds.
        with self._through("checked_slice" if isinstance(node.arg, nodes.Slice) else None):
            super().visit_Getitem(node, frame)

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        with self._through("checked_literal"):
            super().visit_List(node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        with self._through("checked_literal"):
            super().visit_Dict(node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        # An assignment target (``{% for a, b in … %}``) builds nothing.
        with self._through("checked_literal" if node.ctx == "load" else None):
            super().visit_Tuple(node, frame)

    @contextmanager
    def _through(self, method: str | None) -> Iterator[None]:
        """The code written inside, as the argument of ``environment.<method>`` if there is one."""
        if method is not None:
            self.write(f"environment.{method}(")
        yield
        if method is not None:
            self.write(")")


class OutputBuffer(list[str]):
    """Where a macro, a ``{% set %}`` block or an import collects its output, charged as it
    grows: a loop could otherwise pile up new strings long before they are joined."""

    def append(self, chunk: str, /) -> None:
        _charge(len(chunk) + 1)
        super().append(chunk)

    def extend(self, chunks: Iterable[str], /) -> None:
        for chunk in chunks:
            self.append(chunk)


class _CompiledHooks:
    """What code compiled by ``LetterCodeGenerator`` calls as ``environment.<name>``."""

    @staticmethod
    def loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
        budget = CURRENT_BUDGET.get()
        for item in iterable:
            if budget is not None:
                budget.step()
            yield item

    @staticmethod
    def join_values(values: tuple[Any, ...]) -> str:
        _spend(sum(_size(v) for v in values), "'~'")
        return "".join(map(str, values))

    @staticmethod
    def checked_literal(value: Any) -> Any:
        return _fits(value, "a literal")

    @staticmethod
    def checked_slice(value: Any) -> Any:
        return _fits(value, "a slice")

    @staticmethod
    def output_buffer() -> OutputBuffer:
        return OutputBuffer()

    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        """Joins captured output (macros, {% set %} blocks, filter blocks, self.block())."""
        text = collect(parts, MAX_VALUE, f"captured output of more than {MAX_VALUE:,} characters")
        _charge(len(text))
        return text


# -- the environment ------------------------------------------------------------------------------


class LetterTemplate(Template):
    def make_module(
        self,
        vars: dict[str, Any] | None = None,
        shared: bool = False,
        locals: Mapping[str, Any] | None = None,
    ) -> TemplateModule:
        """An imported template's module, its top-level output collected into an OutputBuffer."""
        context = self.new_context(vars, shared, locals)
        body = OutputBuffer()
        body.extend(self.root_render_func(context))
        return TemplateModule(self, context, body)


class LetterEnvironment(_CompiledHooks, ImmutableSandboxedEnvironment):
    """The immutable sandbox, with views limited to their data fields (``template_view``), every
    filter, test, call, operator and include guarded, and the filters a letter adds
    (``extra_filters``) guarded like Jinja's own."""

    code_generator_class = LetterCodeGenerator
    template_class = LetterTemplate
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, *, extra_filters: Mapping[str, Callable[..., Any]], **options: Any) -> None:
        super().__init__(**options)
        self.filters.update(extra_filters)
        for name in ("pprint", "tojson"):
            del self.filters[name]
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}
        self.tests = {name: _guard_test(cast(Callable[..., Any], func)) for name, func in self.tests.items()}
        del self.globals["lipsum"]
        self.globals["range"] = _budget_range

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        allowed = _VIEWS.get(type(obj))
        if allowed is not None:
            return attr in allowed
        return bool(super().is_safe_attribute(obj, attr, value))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _step()
        wrapped: Any = getattr(obj, "__wrapped__", None)  # str.format, as the sandbox wraps it
        if isinstance(obj, LoopContext) and args:  # loop(children) in a recursive for loop
            args = (self.loop_guard(args[0]), *args[1:])
        elif _is_method(obj):
            args = _check_method(obj, args, kwargs)
        elif _is_method(wrapped) and isinstance(wrapped.__self__, str):
            _check_format(wrapped, args, kwargs)
        return _fits(super().call(context, obj, *args, **kwargs), getattr(obj, "__name__", "a call"))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _step()
        _check_binop(operator, left, right)
        result = self.binop_table[operator](left, right)
        return result if isinstance(result, int | float) else _fits(result, repr(operator))

    def get_template(self, *args: Any, **kwargs: Any) -> Template:
        _step()  # an include is a step: a template including itself twice would otherwise fan out
        return super().get_template(*args, **kwargs)

    def select_template(self, *args: Any, **kwargs: Any) -> Template:
        _step()
        return super().select_template(*args, **kwargs)
