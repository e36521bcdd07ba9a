"""Sphinx extension of the RHEL book: keep notebook HTML outputs free of CDN resources.

``matplotlib.animation.Animation.to_jshtml`` emits a ``<link rel="stylesheet">`` that loads
Font Awesome 4 from a CDN for the icons of its play/step buttons. The book theme already ships
Font Awesome locally (and understands the old ``fa fa-*`` class names), so the link is only an
outside request that fails offline. This extension removes such stylesheet links from raw HTML
nodes when a document is read; ``book/build.py`` afterwards checks the built site for any other
reference to an outside host.
"""

from __future__ import annotations

import re

from docutils import nodes

# <link ... href="http(s)://..." ...> (any attribute order), the whole tag.
_REMOTE_LINK = re.compile(
    r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*",
    flags=re.IGNORECASE,
)


def strip_remote_links(html: str) -> str:
    """Return ``html`` without ``<link>`` tags that point at another host."""
    return _REMOTE_LINK.sub("", html)


def _clean_raw_nodes(app, doctree) -> None:
    for node in list(doctree.findall(nodes.raw)):
        if "html" not in node.get("format", "").split():
            continue
        text = node.astext()
        cleaned = strip_remote_links(text)
        if cleaned != text:
            node.children = []
            node += nodes.Text(cleaned)


def setup(app):
    app.connect("doctree-read", _clean_raw_nodes)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
