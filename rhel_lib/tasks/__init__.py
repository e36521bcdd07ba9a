"""Synthetic tasks (Copy-Paste) for the Hopfield Hamiltonian RNN."""

from rhel_lib.tasks.copy_paste import (
    CopyPaste,
    CopyPasteBatch,
    bit_accuracy,
    copy_paste_batch,
    copy_paste_loss,
)

__all__ = ["CopyPaste", "CopyPasteBatch", "bit_accuracy", "copy_paste_batch", "copy_paste_loss"]
