"""Copy-Paste (after Hochreiter & Schmidhuber 1997): recall bit patterns after a delay.

One sequence (time steps ``0 … length−1``)::

    [ presentation: pattern_length ][ delay ][ cue: cue_length ][ recall: pattern_length ]

* presentation: ``num_patterns`` random ``num_bits``-bit patterns, one after the other, each held
  for ``pattern_length / num_patterns`` steps, on the first ``num_bits`` input channels as ±1;
* delay: all inputs 0;
* cue: the last input channel is 1 (0 elsewhere at all other times);
* recall window: inputs 0; the target is the presented sequence again, step by step (the target
  at recall step ``s`` is the pattern shown at presentation step ``s``).

Targets are bits in ``{0, 1}`` at every step (0 outside the recall window, where the ``mask`` is 0).
The metric is the **bit accuracy on the recall window**: the fraction of (step, bit) pairs of the
window where the prediction (logit > 0) equals the target; chance is 50%. The loss is the binary
cross-entropy of the logits, averaged over the recall window. Defaults give 400 steps.

Batches are a pure function of ``(seed, split, index)`` via ``numpy.random.default_rng``, or are
drawn from a ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rhel_lib._validation import check_positive_int

__all__ = [
    "SPLITS",
    "CopyPaste",
    "CopyPasteBatch",
    "bit_accuracy",
    "copy_paste_batch",
    "copy_paste_loss",
]

SPLITS = {"train": 0, "test": 1, "probe": 2}


@dataclass(frozen=True)
class CopyPaste:
    """Lengths of the Copy-Paste task (all in time steps).

    Attributes:
        num_bits: bits per pattern (3).
        num_patterns: patterns shown one after the other in the presentation window.
        pattern_length: steps of the presentation window (and of the recall window); a
            multiple of ``num_patterns``.
        delay: steps between the end of the presentation and the cue.
        cue_length: steps of the cue.
    """

    num_bits: int = 3
    num_patterns: int = 4
    pattern_length: int = 100
    delay: int = 199
    cue_length: int = 1

    def __post_init__(self):
        for name in ("num_bits", "num_patterns", "pattern_length", "cue_length"):
            check_positive_int(name, getattr(self, name))
        if isinstance(self.delay, bool) or not isinstance(self.delay, (int, np.integer)):
            raise TypeError(f"delay must be an integer >= 0; got {self.delay!r}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0; got {self.delay!r}")
        if self.pattern_length % self.num_patterns:
            raise ValueError(
                f"pattern_length ({self.pattern_length}) must be a multiple of num_patterns "
                f"({self.num_patterns})"
            )

    @property
    def hold(self) -> int:
        """Steps each pattern is shown (and recalled)."""
        return self.pattern_length // self.num_patterns

    @property
    def length(self) -> int:
        """Steps of a whole sequence: ``2 · pattern_length + delay + cue_length``."""
        return 2 * self.pattern_length + self.delay + self.cue_length

    @property
    def input_dim(self) -> int:
        """``num_bits`` pattern channels and one cue channel."""
        return self.num_bits + 1

    @property
    def output_dim(self) -> int:
        return self.num_bits

    @property
    def recall_start(self) -> int:
        return self.pattern_length + self.delay + self.cue_length

    def recall_mask(self) -> np.ndarray:
        """float32 ``(length,)``: 1 on the recall window, 0 elsewhere."""
        mask = np.zeros((self.length,), np.float32)
        mask[self.recall_start :] = 1.0
        return mask

    def to_dict(self) -> dict:
        return asdict(self)


class CopyPasteBatch(NamedTuple):
    """``inputs (B, L, num_bits + 1)``, ``targets (B, L, num_bits)`` in {0, 1} and the recall
    ``mask (L,)``; all float32 numpy arrays. ``patterns (B, num_patterns, num_bits)`` in {0, 1}."""

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    patterns: np.ndarray


def copy_paste_batch(
    task: CopyPaste,
    batch_size: int,
    rng: np.random.Generator | None = None,
    *,
    seed: int | None = None,
    split: str = "train",
    index: int = 0,
) -> CopyPasteBatch:
    """A batch of Copy-Paste sequences.

    Either pass a ``numpy.random.Generator`` ``rng``, or ``seed`` (with ``split`` in
    ``"train"``/``"test"``/``"probe"`` and ``index``, e.g. the optimiser step): the batch is then
    ``default_rng([seed, split, index])``'s, a pure function of the three.
    """
    check_positive_int("batch_size", batch_size)
    if rng is None:
        if seed is None:
            raise ValueError("pass a numpy Generator `rng` or an integer `seed`")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLITS)}")
        rng = np.random.default_rng([int(seed), SPLITS[split], int(index)])
    patterns = rng.integers(0, 2, size=(batch_size, task.num_patterns, task.num_bits))
    sequence = np.repeat(patterns, task.hold, axis=1).astype(np.float32)  # (B, P, bits)
    inputs = np.zeros((batch_size, task.length, task.input_dim), np.float32)
    inputs[:, : task.pattern_length, : task.num_bits] = 2.0 * sequence - 1.0
    cue = task.pattern_length + task.delay
    inputs[:, cue : cue + task.cue_length, task.num_bits] = 1.0
    targets = np.zeros((batch_size, task.length, task.num_bits), np.float32)
    targets[:, task.recall_start :] = sequence
    return CopyPasteBatch(inputs, targets, task.recall_mask(), patterns.astype(np.float32))


def copy_paste_loss(logits, targets, mask):
    """Binary cross-entropy of ``logits`` ``(..., L, bits)`` averaged over the recall window
    (``mask (L,)``), the batch and the bits."""
    logits, targets, mask = (jnp.asarray(x) for x in (logits, targets, mask))
    per_bit = jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    weights = jnp.broadcast_to(mask[:, None], per_bit.shape[-2:])
    return jnp.sum(per_bit * weights) / (jnp.sum(weights) * (per_bit.size // weights.size))


def bit_accuracy(logits, targets, mask) -> jax.Array:
    """Fraction of (step, bit) pairs of the recall window with ``(logit > 0) == target``."""
    logits, targets, mask = (jnp.asarray(x) for x in (logits, targets, mask))
    correct = ((logits > 0) == (targets > 0.5)).astype(jnp.float32)
    weights = jnp.broadcast_to(mask[:, None], correct.shape[-2:]).astype(jnp.float32)
    return jnp.sum(correct * weights) / (jnp.sum(weights) * (correct.size // weights.size))
