"""One figure style for the whole book: :func:`set_style`, and a fixed colour per method.

Every notebook and library figure calls :func:`set_style` once and takes its colours from
:data:`METHOD_COLORS` (through :func:`method_color`), so BPTT is the same blue and RHEL the same
orange on every page. The palette is seaborn's colour-blind-safe ``"colorblind"`` palette.
matplotlib and seaborn are imported lazily (they belong to the ``book`` extra).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "METHOD_COLORS",
    "METHOD_LABELS",
    "PALETTE",
    "PRECISION_COLORS",
    "method_color",
    "method_label",
    "set_style",
]

#: seaborn's "colorblind" palette (same order).
PALETTE = (
    "#0173B2",  # blue
    "#DE8F05",  # orange
    "#029E73",  # green
    "#D55E00",  # vermilion
    "#CC78BC",  # purple
    "#CA9161",  # brown
    "#FBAFE4",  # pink
    "#949494",  # grey
    "#ECE133",  # yellow
    "#56B4E9",  # light blue
)

#: Colour of each training method / reference in every figure.
METHOD_COLORS: dict[str, str] = {
    "bptt": PALETTE[0],
    "rhel": PALETTE[1],
    "tbptt": PALETTE[2],
    "eprop": PALETTE[4],
    "hebbian": PALETTE[3],
    "paper": PALETTE[7],
}

#: How each method is written in legends and tables.
METHOD_LABELS: dict[str, str] = {
    "bptt": "BPTT",
    "rhel": "RHEL",
    "tbptt": "truncated BPTT",
    "eprop": "e-prop",
    "hebbian": "contrastive Hebbian (RHEL)",
    "paper": "paper",
}

#: Colours of the two floating-point precisions (e.g. the error-versus-ε curves).
PRECISION_COLORS: dict[str, str] = {"float32": PALETTE[3], "float64": PALETTE[0]}

_ALIASES = {
    "truncated_bptt": "tbptt",
    "truncated bptt": "tbptt",
    "t-bptt": "tbptt",
    "e-prop": "eprop",
    "e_prop": "eprop",
    "contrastive_hebbian": "hebbian",
    "contrastive hebbian": "hebbian",
    "hebbian_rhel": "hebbian",
    "reference": "paper",
}


def _canonical(method: str) -> str:
    key = method.strip().lower()
    return _ALIASES.get(key, key)


def method_color(method: str) -> str:
    """The colour of ``method`` (case-insensitive; e.g. ``"RHEL"``, ``"e-prop"``); grey for
    methods without an assigned colour."""
    return METHOD_COLORS.get(_canonical(method), PALETTE[7])


def method_label(method: str) -> str:
    """The display name of ``method`` (e.g. ``"rhel"`` -> ``"RHEL"``)."""
    return METHOD_LABELS.get(_canonical(method), method)


def set_style(context: str = "notebook", font_scale: float = 1.0, **rc: Any) -> None:
    """Apply the book's figure style (seaborn ``whitegrid`` theme, colour-blind palette,
    no top/right spines, tight saving at 150 dpi); extra matplotlib ``rc`` settings win."""
    import seaborn as sns

    settings = {
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.dpi": 100,
        "figure.constrained_layout.use": True,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
        "legend.frameon": False,
        "image.cmap": "viridis",
        "lines.linewidth": 1.8,
    }
    settings.update(rc)
    sns.set_theme(
        context=context,
        style="whitegrid",
        palette=list(PALETTE),
        font_scale=font_scale,
        rc=settings,
    )
