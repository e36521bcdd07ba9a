"""Sphinx extension of the RHEL book: the API reference (``book/api.md``) under a strict build.

The book is built with ``-W -n`` (every warning is an error, every unresolved cross-reference is
a warning). The docstrings of ``rhel_lib`` are written for ``help()`` as much as for the book, so
this extension adapts autodoc and napoleon to them instead of the other way round:

* **References by short or re-exported name.** A docstring of ``rhel_lib.integrators`` may say
  ``:class:`StepRecord``` (defined in ``rhel_lib.hamiltonian``) and one of ``rhel_lib.explore``
  ``:class:`~rhel_lib.GradientConfig``` (re-exported by the package). Sphinx only finds objects
  under the name they are documented with; :func:`resolve_reference` imports the target in the
  module (and class) of the docstring, takes the object's defining module and qualified name and
  links to the entry documented under that name.
* **References that cannot be linked offline.** The book is built without intersphinx
  inventories (nothing is downloaded), so ``json.loads``, ``numpy.ndarray`` or the ``jax`` and
  ``jaxtyping`` types of a signature have nothing to link to, and neither has a ``rhel_lib``
  object that the reference does not list (a private helper, a constant without a doc
  comment). :func:`keep_warning` silences the warning for a target that *exists*, that is, it
  can be imported in the docstring's module. A target that does not exist (a typo, a renamed
  function) still fails the build.
* **Type hints as the source writes them.** autodoc prints jax's array class as
  ``jaxlib._jax.Array``, expands ``PRNGKeyArray`` into ``Key[...] | UInt32[...] | UInt32[...]``,
  names classes by their private modules (``equinox._module._module.Module``) and a class used as
  a default value as ``<class '...'>``; :func:`tidy_annotation` rewrites signatures and the types
  and values of properties, attributes and constants.
* **NamedTuple fields.** Python gives each field the docstring "Alias for field number N";
  autodoc would document them next to the fields listed under ``Attributes:`` in the class
  docstring (napoleon), which Sphinx reports as a duplicate object description. They are
  skipped (:func:`skip_member`); the fields appear in the class signature and in its
  ``Attributes:`` section.
* **Prose in attribute docstrings.** napoleon reads the first line of the docstring of an
  attribute, property or constant as ``type: description`` when it contains a colon, so
  ``"Steps of a whole sequence: ..."`` would become a (missing) type ``Steps of a whole
  sequence``. The library never writes inline types there: such docstrings are kept as they are
  (:func:`hide_from_napoleon` and :func:`restore_after_napoleon`, around napoleon's handler).
"""

from __future__ import annotations

import importlib
import re

from sphinx.ext.autodoc import AttributeDocumenter, DataDocumenter, PropertyDocumenter
from sphinx.util.nodes import make_refnode

_ATTRIBUTE_KINDS = ("attribute", "data", "property")
# docstrings set aside between the two handlers around napoleon's (same process, same object)
_STASH: dict[tuple[str, str], list[str]] = {}


# ---------------------------------------------------------------------------------------------
# resolving references
# ---------------------------------------------------------------------------------------------
def import_object(path: str):
    """The object named by the dotted ``path`` (longest importable module prefix, then
    attributes); raises ``LookupError`` when there is none."""
    parts = path.split(".")
    if not all(parts):
        raise LookupError(path)
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:  # not a module (or a module that fails to import)
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError as exc:
            raise LookupError(path) from exc
        return obj
    raise LookupError(path)


def candidate_paths(target: str, module: str | None, cls: str | None) -> list[str]:
    """Where a reference to ``target`` written in ``module`` (inside class ``cls``) may point."""
    target = target.lstrip(".~")
    paths = []
    if module and cls:
        paths.append(f"{module}.{cls}.{target}")
    if module:
        paths.append(f"{module}.{target}")
    paths.append(target)
    return list(dict.fromkeys(paths))


def canonical_name(obj) -> str | None:
    """``module.qualname`` of a function or class (``None`` for other objects)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname:
        return f"{module}.{qualname}"
    return None


def _context(node) -> tuple[str, str | None, str | None]:
    return node.get("reftarget", ""), node.get("py:module"), node.get("py:class")


def resolve_reference(app, env, node, contnode):
    """``missing-reference``: link a Python reference to the entry of the object it names."""
    if node.get("refdomain") != "py":
        return None
    target, module, cls = _context(node)
    objects = env.get_domain("py").objects
    for path in candidate_paths(target, module, cls):
        try:
            obj = import_object(path)
        except LookupError:
            continue
        for name in (path, canonical_name(obj)):
            entry = objects.get(name) if name else None
            if entry is not None:
                return make_refnode(
                    app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name
                )
    return None  # no entry for the object (see keep_warning) or no such object


def keep_warning(app, domain, node) -> bool | None:
    """``warn-missing-reference``: silence unresolved Python references to existing objects."""
    if domain is None or domain.name != "py":
        return None
    target, module, cls = _context(node)
    for path in candidate_paths(target, module, cls):
        try:
            import_object(path)
        except LookupError:
            continue
        return True  # exists, but nothing to link to offline
    return None  # a reference to nothing: Sphinx warns (and the strict build fails)


# ---------------------------------------------------------------------------------------------
# autodoc and napoleon
# ---------------------------------------------------------------------------------------------
# how autodoc spells jax.Array: its class lives in jaxlib (``~jax.jaxlib._jax.Array`` on its own,
# ``jaxlib._jax.Array`` inside a jaxtyping annotation such as ``Float[jaxlib._jax.Array, 'K H']``)
_JAX_ARRAY = re.compile(r"~?(?:jax\.)?jaxlib\._jax\.Array\b")
# jaxtyping.PRNGKeyArray, once expanded
_PRNG_KEY = "~jaxtyping.Key[~jax.Array, ''] | ~jaxtyping.UInt32[~jax.Array, '2'] | " + (
    "~jaxtyping.UInt32[~jax.Array, '4']"
)
_CLASS_REPR = re.compile(r"<class '([\w.]+)'>")
# a dotted name with a private component, e.g. ~equinox._module._module.Module
_PRIVATE_PATH = re.compile(r"(~?)((?:[A-Za-z]\w*\.)+(?:_\w+\.)+(?:\w+\.)*[A-Za-z]\w*)")


def public_path(path: str) -> str:
    """The shortest public dotted name of the object at ``path`` (``path`` if there is none):
    ``equinox._module._module.Module`` is ``equinox.Module``."""
    parts = path.split(".")
    try:
        obj = import_object(path)
    except LookupError:
        return path
    for i in range(1, len(parts) - 1):
        if any(p.startswith("_") for p in parts[:i]):
            break
        candidate = ".".join(parts[:i] + parts[-1:])
        try:
            if import_object(candidate) is obj:
                return candidate
        except LookupError:
            continue
    return path


def tidy_annotation(text: str) -> str:
    """Type hints as the source writes them: ``Array`` for jax's array class, ``PRNGKeyArray``
    instead of its expansion, public names instead of private module paths; a class as a default
    value by its name (``dtype=jax.numpy.float32``, not ``<class 'jax.numpy.float32'>``)."""
    text = _JAX_ARRAY.sub("~jax.Array", text)
    text = text.replace(_PRNG_KEY, "~jaxtyping.PRNGKeyArray")
    text = _CLASS_REPR.sub(r"\1", text)  # a class as a default value: <class 'x.y'> is x.y
    return _PRIVATE_PATH.sub(lambda m: m.group(1) + public_path(m.group(2)), text)


def tidy_signature(app, what, name, obj, options, signature, return_annotation):
    """``autodoc-process-signature``: :func:`tidy_annotation` on parameters and return type
    (of functions, methods and classes)."""
    if signature is None and return_annotation is None:
        return None
    return (
        None if signature is None else tidy_annotation(signature),
        None if return_annotation is None else tidy_annotation(return_annotation),
    )


def _tidy_header_lines(documenter_class):
    """``documenter_class`` whose ``:type:`` and ``:value:`` lines get :func:`tidy_annotation`
    (the types of properties, attributes and constants do not pass through
    ``autodoc-process-signature``)."""

    class Tidy(documenter_class):
        def add_directive_header(self, sig: str) -> None:
            start = len(self.directive.result)
            super().add_directive_header(sig)
            result = self.directive.result
            for i in range(start, len(result)):
                indent, option, value = result[i].partition(":type: ")
                if option and not indent.strip():
                    result[i] = indent + option + tidy_annotation(value)
                indent, option, value = result[i].partition(":value: ")
                if option and not indent.strip():
                    result[i] = indent + option + _CLASS_REPR.sub(r"\1", value)

    Tidy.__name__ = Tidy.__qualname__ = f"Tidy{documenter_class.__name__}"
    return Tidy


def skip_member(app, what, name, obj, skip, options):
    """``autodoc-skip-member``: leave out the generated docstrings of NamedTuple fields."""
    doc = getattr(obj, "__doc__", None)
    if what == "class" and isinstance(doc, str) and doc.startswith("Alias for field number"):
        return True
    return None


def hide_from_napoleon(app, what, name, obj, options, lines):
    """``autodoc-process-docstring`` before napoleon: set attribute docstrings aside."""
    if what in _ATTRIBUTE_KINDS and lines:
        _STASH[(what, name)] = list(lines)
        lines[:] = []


def restore_after_napoleon(app, what, name, obj, options, lines):
    """``autodoc-process-docstring`` after napoleon: put attribute docstrings back unchanged."""
    saved = _STASH.pop((what, name), None)
    if saved is not None:
        lines[:] = saved


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.napoleon")
    # napoleon's own handler runs at the default priority, 500
    app.connect("autodoc-process-docstring", hide_from_napoleon, priority=490)
    app.connect("autodoc-process-docstring", restore_after_napoleon, priority=510)
    app.connect("autodoc-skip-member", skip_member)
    app.connect("autodoc-process-signature", tidy_signature)
    for documenter in (AttributeDocumenter, DataDocumenter, PropertyDocumenter):
        app.add_autodocumenter(_tidy_header_lines(documenter), override=True)
    app.connect("missing-reference", resolve_reference)
    app.connect("warn-missing-reference", keep_warning)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
