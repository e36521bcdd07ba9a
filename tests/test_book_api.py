"""The book's API reference (``book/api.md``) documents ``rhel_lib`` from its docstrings.

Checks the built page (``tests/book_fixtures.py``: ``built_book``, the strict ``-W -n`` build)
rather than the Sphinx configuration: the key objects have an entry, their signatures list their
parameters, the Google-style ``Args:`` sections are rendered as "Parameters" field lists by
napoleon, short references across modules are links (``book/ext/rhel_api.py``) and the type hints
are written as in the source (``Array``, not ``jaxlib._jax.Array``).
"""

from __future__ import annotations

import html
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest.register_assert_rewrite("book_fixtures")
pytest_plugins = ["book_fixtures"]
# One xdist worker runs every book test, so the notebooks are executed and built only once.
pytestmark = pytest.mark.xdist_group("book")

from book_fixtures import build  # noqa: E402

API_PAGE = "book/api.html"


@dataclass(frozen=True)
class Expected:
    """What the entry of one object must show."""

    signature: tuple[str, ...]  # parameter names in the signature
    fields: tuple[str, ...] = ()  # parameters with a description in the "Parameters" list
    prose: tuple[str, ...] = ()  # parameters named (as code) in a docstring without "Args:"
    links: tuple[str, ...] = ()  # anchors the entry links to


EXPECTED = {
    "rhel_lib.integrators.leapfrog_step": Expected(
        signature=("ham", "state", "u"),
        prose=("ham", "state", "u"),
        links=("rhel_lib.hamiltonian.StepRecord",),  # :class:`StepRecord`, another module
    ),
    "rhel_lib.echo.echo_gradients": Expected(
        signature=("params", "static", "inputs", "final", "cotangent", "config", "epsilon"),
        prose=("params", "static", "epsilon"),
    ),
    "rhel_lib.models.make_model": Expected(
        signature=("name", "data_dim", "gradient", "epsilon", "key", "dtype"),
        fields=("name", "data_dim", "label_dim", "ssm_dim", "gradient", "epsilon", "key"),
        links=("rhel_lib.models.set_gradient", "rhel_lib.echo.GradientConfig"),
    ),
    "rhel_lib.models.set_gradient": Expected(
        signature=("model", "gradient", "epsilon", "loss_scale", "estimator", "chunk_size"),
        prose=("gradient",),
    ),
    "rhel_lib.units.linear.LinHRU": Expected(
        signature=("input_dim", "state_dim", "complex_ssm", "step", "gradient", "key"),
        fields=("input_dim", "state_dim", "complex_ssm", "train_step", "step", "parallel"),
    ),
    "rhel_lib.units.nonlinear.NonlinHRU": Expected(
        signature=("input_dim", "state_dim", "step", "gradient", "key"),
        fields=("input_dim", "state_dim", "step"),
    ),
    "rhel_lib.units.hopfield.HopfieldHRU": Expected(
        signature=("input_dim", "state_dim", "output_dim", "nonlinearity", "step", "key"),
        fields=("input_dim", "state_dim", "output_dim", "nonlinearity", "step"),
    ),
}

_DT = '<dt class="sig sig-object py" id="{}">'
_NEXT_ENTRY = re.compile(r'<dt class="sig sig-object py" id=')
_SIG_PARAM = re.compile(r'<em class="sig-param">(.*?)</em>', re.S)
_PARAMETERS_FIELD = re.compile(
    r'<dt class="field-\w+">Parameters<span class="colon">:</span></dt>\s*<dd class="field-\w+">'
    r"(.*?)</dd>",
    re.S,
)
_FIELD_ITEM = re.compile(r"<p><strong>(\w+)</strong>\s*–\s*(.*?)</p>", re.S)
_CODE = re.compile(r'<code class="docutils literal notranslate">(.*?)</code>', re.S)


def plain(fragment: str) -> str:
    """Text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def api_entry(page: str, name: str) -> tuple[str, str] | None:
    """``(signature, body)`` HTML of the entry of ``name``: the body runs up to the next
    documented object (a member of a class, or the next entry)."""
    start = page.find(_DT.format(name))
    if start < 0:
        return None
    end_sig = page.index("</dt>", start)
    next_entry = _NEXT_ENTRY.search(page, end_sig)
    end = next_entry.start() if next_entry else len(page)
    return page[start:end_sig], page[end_sig:end]


def entry_problems(page: str, name: str, expected: Expected) -> list[str]:
    entry = api_entry(page, name)
    if entry is None:
        return [f"{name}: no entry"]
    signature, body = entry
    problems = []
    params = [re.split(r"[:=]", plain(p))[0].strip(" *") for p in _SIG_PARAM.findall(signature)]
    missing = [p for p in expected.signature if p not in params]
    if missing:
        problems.append(f"{name}: signature {params} lacks {missing}")
    if not plain(body):
        problems.append(f"{name}: no description")
    if expected.fields:
        field = _PARAMETERS_FIELD.search(body)
        described = {n: plain(d) for n, d in _FIELD_ITEM.findall(field.group(1))} if field else {}
        missing = [p for p in expected.fields if not described.get(p)]
        if missing:
            problems.append(f"{name}: no description of {missing} under 'Parameters'")
    if expected.prose:
        code = {plain(c) for c in _CODE.findall(body)}
        missing = [p for p in expected.prose if p not in code]
        if missing:
            problems.append(f"{name}: the description does not name {missing}")
    for anchor in expected.links:
        if f'href="#{anchor}"' not in body:
            problems.append(f"{name}: no link to {anchor}")
    return problems


def api_reference_problems(html_dir: Path) -> list[str]:
    """Everything wrong with the API reference of the site built in ``html_dir``."""
    path = Path(html_dir) / API_PAGE
    if not path.exists():
        return [f"{API_PAGE} was not built"]
    page = path.read_text(encoding="utf-8")
    problems = []
    for name, expected in EXPECTED.items():
        problems += entry_problems(page, name, expected)
    text = html.unescape(page)
    for raw in ("jaxlib._jax", "<class '"):
        if raw in text:
            problems.append(f"{API_PAGE}: a type or value as Python prints it ({raw!r}...)")
    return problems


def test_api_reference_is_a_chapter():
    names = build.toc_docnames()
    assert "book/api" in names, "_toc.yml does not list book/api"
    assert names.index("book/api") == names.index("book/reproduce") + 1


def test_api_reference_documents_the_library(built_book):
    problems = api_reference_problems(built_book)
    assert not problems, "\n  ".join(["API reference:", *problems])
