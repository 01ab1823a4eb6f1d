"""A template that fails or runs away at render time ends in a RenderError, fast and small.

Staff edit templates; a mistake (or a hostile edit) must not crash ``check``, ``actions`` or
``run``, nor exhaust the memory or the time of a dispatcher sending thousands of letters.
"""

from __future__ import annotations

import datetime as dt
import time
import tracemalloc
from pathlib import Path

import pytest

from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Action
from dispatcher.letters.render import Renderer, RenderError
from dispatcher.letters.sandbox import MAX_LETTER, RENDER_SECONDS
from dispatcher.models import Signer
from tests.conftest import ROOT

TODAY = dt.date(2026, 11, 23)
SIGNER = Signer("Ann Lee", "ann@example.net", "Leeds", "GB", "en")
MB = 2**20


@pytest.fixture(scope="module", autouse=True)
def _warm_caches() -> None:
    """Load Babel's English data once, so memory measured below is the template's alone."""
    shipped = load_actions(ROOT / "config" / "actions").actions["demo-xinjiang"]
    Renderer(ROOT / "templates").render(shipped, shipped.targets[0], "en", SIGNER, TODAY)


def make(tmp_path: Path, body: str, **others: str) -> tuple[Renderer, Action]:
    """An action ``a`` with one target ``t`` and ``templates/a/en.j2`` holding ``body``."""
    (tmp_path / "actions").mkdir(parents=True, exist_ok=True)
    (tmp_path / "actions" / "a.yaml").write_text(
        "id: a\ntitle: T\ndeadline: 2030-01-01\nstatus: active\nlanguages: [en]\ntargets:\n"
        "  - id: t\n    name: Target\n    languages: [en]\n    salutation: {en: Dear Target}\n"
        "    email: t@example.org\n    channels: [email]\n"
    )
    folder = tmp_path / "templates" / "a"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "en.j2").write_text(
        "{% block subject %}Subject{% endblock %}\n{% block body %}" + body + "{% endblock %}\n",
        encoding="utf-8",
    )
    for name, text in others.items():
        (folder / f"{name}.j2").write_text(text, encoding="utf-8")
    loaded = load_actions(tmp_path / "actions")
    assert not loaded.errors
    return Renderer(tmp_path / "templates"), loaded.actions["a"]


def refusal(tmp_path: Path, body: str, signer: Signer = SIGNER, **others: str) -> str:
    """Render ``body``: a RenderError within ~2 s, allocating a few MB at most. Returns the problem."""
    renderer, action = make(tmp_path, body, **others)
    target = action.target("t")
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        renderer.render(action, target, "en", signer, TODAY)
    elapsed = time.monotonic() - started
    assert elapsed < 2 * RENDER_SECONDS + 1, f"took {elapsed:.1f} s"
    # Again under tracemalloc, which makes Python code ~10 times slower: a runaway may then stop
    # at the deadline rather than at a step or size limit, but it must stop all the same.
    tracemalloc.start()
    try:
        with pytest.raises(RenderError):
            renderer.render(action, target, "en", signer, TODAY)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MB, f"allocated {peak / MB:.1f} MiB"
    # check() reports it, at the same place, instead of raising
    problems = renderer.check(action, ("email",), TODAY)
    assert [p.problem.split(": ")[0] for p in problems] == [caught.value.problem.split(": ")[0]]
    return caught.value.problem


# -- any exception becomes a RenderError naming the template file and line ---------------------


RUNTIME_ERRORS = {
    "division": ("\n\n{{ 1 / 0 }}", "line 4: ZeroDivisionError: division by zero"),
    "date of a string": ("\n{{ 'x'|date }}", "line 3: "),
    "missing key": ("\n{{ {}['k'] }}", "line 3: no 'k' in a dict value"),
    "self include": ("\n\n\n{% include 'a/en.j2' %}", "line 5: RecursionError"),
    "recursive macro": ("{% macro m() %}{{ m() }}{% endmacro %}\n{{ m() }}", "line 2: RecursionError"),
    "recursive block": ("\n{{ self.body() }}", "line 3: RecursionError"),
    "syntax": ("\n{{ oops( }}", "line 3: TemplateSyntaxError"),
    "recursive loop": ("\n{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "line 3: RecursionError"),
}


@pytest.mark.parametrize(("body", "fragment"), RUNTIME_ERRORS.values(), ids=RUNTIME_ERRORS.keys())
def test_runtime_errors_name_the_template_file_and_line(tmp_path: Path, body: str, fragment: str) -> None:
    problem = refusal(tmp_path, body)
    path = tmp_path / "templates" / "a" / "en.j2"
    assert problem.startswith(f"{path} line "), problem
    assert fragment in problem, problem


def test_an_error_in_an_included_template_names_that_file(tmp_path: Path) -> None:
    problem = refusal(tmp_path, "{% include 'a/part.j2' %}", part="one\ntwo\n{{ 1 // 0 }}\n")
    assert problem.startswith(f"{tmp_path / 'templates' / 'a' / 'part.j2'} line 3: ZeroDivisionError"), (
        problem
    )


def test_a_template_that_is_not_utf8_is_a_render_error(tmp_path: Path) -> None:
    renderer, action = make(tmp_path, "x")
    (tmp_path / "templates" / "a" / "en.j2").write_bytes(b"{% block subject %}\xff{% endblock %}")
    problems = renderer.check(action, ("email",), TODAY)
    assert len(problems) == 1 and "UnicodeDecodeError" in problems[0].problem


def test_render_error_keeps_its_fields(tmp_path: Path) -> None:
    renderer, action = make(tmp_path, "{{ 1 / 0 }}")
    with pytest.raises(RenderError) as caught:
        renderer.render(action, action.target("t"), "en", SIGNER, TODAY)
    error = caught.value
    assert (error.action_id, error.target_id, error.language) == ("a", "t", "en")
    assert str(error) == f"a × t × en: {error.problem}"


# -- memory and time are bounded ----------------------------------------------------------------

BIG = "{% set big = 'x' * 60000 %}"
PATHOLOGICAL = {
    "str times int": ("{{ 'a' * 10**9 }}", "characters"),
    "list times int": ("{{ [1, 2] * 10**9 }}", "characters"),
    "str power": ("{{ 'x' ** 9 }}", "TypeError"),
    "int power": ("{{ 2 ** (10**9) }}", "bits"),
    "power tower": ("{{ 9 ** (9 ** 9) }}", "bits"),
    "squaring": ("{% set a = 2**4000 %}{% set b = a * a %}{{ b * b }}", "bits"),
    "huge range": ("{{ range(10**9)|length }}", "range"),
    "ranges add up": ("{% for i in range(10) %}{{ range(30000)|length }}{% endfor %}", "range"),
    "range list": ("{{ range(100000)|list|length }}", "characters"),
    "ljust": ("{{ 'x'.ljust(10**9) }}", "characters"),
    "center method": ("{{ 'x'.center(10**9) }}", "characters"),
    "zfill": ("{{ '1'.zfill(10**9) }}", "characters"),
    "center filter": ("{{ 'x'|center(10**9) }}", "1000000000"),
    "indent": ("{{ 'x'|indent(10**9) }}", "1000000000"),
    "indent lines": (BIG + "{{ ('\n' * 60000)|indent(60000) }}", "characters"),
    "wordwrap width": ("{{ 'x'|wordwrap(10**9) }}", "1000000000"),
    "wordwrap string": (BIG + "{{ ('x ' * 30000)|wordwrap(1, wrapstring=big) }}", "characters"),
    "truncate": ("{{ 'x'|truncate(10**9) }}", "1000000000"),
    "format filter": ("{{ '%*s'|format(10**9, 'x') }}", "characters"),
    "format filter widths": ("{{ ('%60000s' * 1000)|format(*(['x'] * 1000)) }}", "characters"),
    "percent": ("{{ '%*s' % (10**9, 'x') }}", "characters"),
    "percent precision": ("{{ '%.999999999f' % 1.5 }}", "characters"),
    "percent mapping": ("{{ ('%(a)s' * 20000) % {'a': 'y' * 60000} }}", "characters"),
    "str.format width": ("{{ '{:>999999999}'.format('x') }}", "characters"),
    "str.format nested": ("{{ '{:>{}}'.format('x', 10**9) }}", "characters"),
    "str.format repeat": (BIG + "{{ ('{0}' * 30000).format(big) }}", "characters"),
    "format_map": (BIG + "{{ ('{a}' * 30000).format_map({'a': big}) }}", "characters"),
    "expandtabs": ("{{ ('\t' * 60000).expandtabs(60000) }}", "characters"),
    "replace method": (BIG + "{{ big.replace('x', big) }}", "characters"),
    "replace filter": (BIG + "{{ big|replace('x', big) }}", "characters"),
    "replace empty": (BIG + "{{ big.replace('', big) }}", "characters"),
    "join filter": (BIG + "{{ range(60000)|join(big) }}", "characters"),
    "join method": (BIG + "{{ big.join(range(60000)|map('string')) }}", "characters"),
    "join generator": (BIG + "{{ range(60000)|map('string')|join(big) }}", "characters"),
    "translate": (BIG + "{{ big.translate({120: big}) }}", "characters"),
    "markup center": ("{{ ('x'|safe).center(10**9) }}", "characters"),
    "markup join": (BIG + "{{ (big|safe).join(range(60000)|map('string')) }}", "characters"),
    "markup format": ("{{ ('{:>999999999}'|safe).format('x') }}", "characters"),
    "to_bytes": ("{{ (1).to_bytes(10**9, 'big')|length }}", "1000000000"),
    "encode": (BIG + "{{ (big * 2).encode('unicode_escape')|length }}", "characters"),
    "concat doubling": (
        BIG + "{% set b = big ~ big %}{% set c = b ~ b %}{% set d = c ~ c %}{{ d ~ d }}",
        "characters",
    ),
    "plus doubling": (BIG + "{% set b = big + big %}{% set c = b + b %}{{ c + c }}", "characters"),
    "namespace doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "characters",
    ),
    "list doubling": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
        "characters",
    ),
    "nested literals": (
        "{% set a = ('aaaaaaaa', 'aaaaaaaa') %}{% set b = (a, a, a, a, a, a, a, a, a, a) %}"
        "{% set c = (b, b, b, b, b, b, b, b, b, b) %}{% set d = (c, c, c, c, c, c, c, c, c, c) %}"
        "{% set e = (d, d, d, d, d, d, d, d, d, d) %}{% set f = [e, e, e, e, e, e, e, e, e, e] %}"
        "{{ {f|first: 1} }}",
        "characters",
    ),
    "sum of lists": ("{{ ([[1]] * 10000)|sum(start=[])|length }}", "sum"),
    "nested loops over a string": (
        "{% set s = 'x' * 1000 %}{% for a in s %}{% for b in s %}{% for c in s %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "steps",
    ),
    "loop over a generator": ("{% for x in range(100000)|map('string') %}{% endfor %}", "steps"),
    "macro fan-out": (
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(40) }}",
        "steps|took longer",
    ),
    "recursive loop fan-out": ("{% for x in [1, 2] recursive %}{{ loop([1, 2]) }}{% endfor %}", ""),
    "include fan-out": ("{% include 'a/fan.j2' %}", ""),
    "big output": ("{% for i in range(100000) %}" + "letter text " * 10 + "{% endfor %}", "the letter"),
    "big captured output": (
        "{% set s %}{% for i in range(50000) %}" + "letter text " * 10 + "{% endfor %}{% endset %}",
        "characters",
    ),
    "select in": (
        "{% set l = range(15000)|list %}{% set m = range(-15000, 0)|list %}"
        "{{ l|select('in', m)|list|length }}",
        "took longer",
    ),
    "slow steps": (
        "{% set l = range(12000)|list %}{% set m = range(12000)|list %}"
        "{% for i in range(70000) %}{% if l == m %}{% endif %}{% endfor %}",
        "took longer",
    ),
    "many values": (BIG + "".join(f"{{% set a{i} = big ~ {i} %}}" for i in range(300)), "in all"),
    "many slices": (BIG + "".join(f"{{% set a{i} = big[{i}:] %}}" for i in range(300)), "in all"),
    "macro piling up": (
        BIG
        + "{% macro m() %}{% for i in range(1000) %}{{ big ~ i }}{% endfor %}{% endmacro %}{{ m()|length }}",
        "in all",
    ),
    "buffer piling up": (
        "{% set l = ['x' * 1000] * 100 %}"
        "{% set s %}{% for i in range(1000) %}{{ l }}{% endfor %}{% endset %}",
        "in all",
    ),
    "import piling up": ("{% import 'a/hoard.j2' as h %}", "in all"),
    "lipsum": ("{{ lipsum(10**6) }}", "lipsum"),
    "pprint": ("{{ [1]|pprint }}", "pprint"),
}


@pytest.mark.parametrize(("body", "fragment"), PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_runaway_templates_are_stopped(tmp_path: Path, body: str, fragment: str) -> None:
    fan = "{% include 'a/fan.j2' %}{% include 'a/fan.j2' %}"
    hoard = "{% set l = ['x' * 1000] * 100 %}{% for i in range(1000) %}{{ l }}{% endfor %}"
    problem = refusal(tmp_path, body, fan=fan, hoard=hoard)
    assert any(alternative in problem for alternative in fragment.split("|")), problem


def test_limits_apply_per_render_not_per_renderer(tmp_path: Path) -> None:
    # Each render takes 60% of the steps, of the range numbers and of the characters it may build.
    body = (
        "{% for i in range(60000) %}{% endfor %}"
        "{% for i in range(10) %}{% set x = 'x' * 60000 %}{% endfor %}{{ 'x'.ljust(60000)|length }}"
    )
    renderer, action = make(tmp_path, body)
    for _ in range(3):
        letter = renderer.render(action, action.target("t"), "en", SIGNER, TODAY)
        assert letter.body == "60000\n"


def test_a_letter_up_to_the_limit_renders(tmp_path: Path) -> None:
    renderer, action = make(tmp_path, "{{ 'x' * (" + str(MAX_LETTER - 20) + ") }}")
    letter = renderer.render(action, action.target("t"), "en", SIGNER, TODAY)
    assert len(letter.body) == MAX_LETTER - 19


ORDINARY = {
    "thousands": ("{{ '{:,}'.format(1500000) }}", "1,500,000"),
    "percent": ("{{ '%d detainees' % 1500000 }}", "1500000 detainees"),
    "format": ("{{ '%s, %s'|format('a', 'b') }}", "a, b"),
    "join": ("{{ ['a', 'b']|join(', ') }}", "a, b"),
    "replace": ("{{ 'a-b'.replace('-', ' – ') }}", "a – b"),
    "loop": ("{% for n in range(3) %}{{ loop.index }}{% endfor %}", "123"),
    "repeat": ("{{ (supporter.name ~ ' ') * 2 }}", "Ann Lee Ann Lee "),
    "center": ("{{ supporter.name|upper|center(11) }}", "  ANN LEE  "),
    "arithmetic": ("{{ 2 ** 10 + 7 * 6 - 1 }}", "1065"),
    "date": ("{{ action.deadline|date }}", "January 1, 2030"),
    "namespace": (
        "{% set ns = namespace(n=0) %}{% for c in 'abc' %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
        "3",
    ),
    "literals": ("{{ {'a': [1, (2, 3)]}['a'][1][0] }}", "2"),
    "macro": ("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m('y') }}", "<y>"),
    "split map join": ("{{ 'a b c'.split()|map('upper')|join }}", "ABC"),
    "indent": ("{{ 'x'|indent(2, first=True) }}", "  x"),
    "loop features": (
        "{% for a, b in [(1, 2), (3, 4)] if a > 1 %}{{ a }}{{ b }}{{ loop.length }}{% else %}-{% endfor %}"
        "{% for x in [] %}{% else %}none{% endfor %}"
        "{% for c in 'ab' %}{{ loop.cycle('x', 'y') }}{% endfor %}",
        "341nonexy",
    ),
    "recursive loop": (
        "{% for x in [[1, [2]], 3] recursive %}"
        "{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}{% endif %}{% endfor %}",
        "123",
    ),
    "include and import": (
        "{% import 'a/parts.j2' as parts %}{{ parts.sign(supporter.name) }} {% include 'a/parts.j2' %}",
        "— Ann Lee — part",
    ),
    "block set and filter block": (
        "{% set s %}{{ supporter.name }}{% endset %}{% filter upper %}{{ s }}{% endfilter %}",
        "ANN LEE",
    ),
    "concatenation": ("{{ supporter.name ~ ', ' ~ supporter.city ~ ' ' ~ 7 }}", "Ann Lee, Leeds 7"),
}


@pytest.mark.parametrize(("body", "expected"), ORDINARY.values(), ids=ORDINARY.keys())
def test_ordinary_templates_still_work(tmp_path: Path, body: str, expected: str) -> None:
    parts = "{% macro sign(name) %}— {{ name }} —{% endmacro %}part"
    renderer, action = make(tmp_path, body, parts=parts)
    letter = renderer.render(action, action.target("t"), "en", SIGNER, TODAY)
    assert letter.body == expected + "\n"


def test_check_renders_with_the_longest_signer_the_importer_allows(tmp_path: Path) -> None:
    # Fine for a short name (22³ iterations), runaway for a 200-character one (8 million).
    body = (
        "{% for a in supporter.name %}{% for b in supporter.name %}{% for c in supporter.name %}"
        "{% endfor %}{% endfor %}{% endfor %}{{ supporter.name }}"
    )
    renderer, action = make(tmp_path, body)
    assert renderer.render(action, action.target("t"), "en", SIGNER, TODAY).body == "Ann Lee\n"
    started = time.monotonic()
    problems = renderer.check(action, ("email",), TODAY)
    assert time.monotonic() - started < RENDER_SECONDS + 1
    assert len(problems) == 1
    assert "200-character" in problems[0].problem and "steps" in problems[0].problem, problems[0].problem
