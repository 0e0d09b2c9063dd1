"""Choosing where reconstruction runs: CUDA when present, CPU otherwise."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a usable ``torch.device``.

    Raises:
        ValueError: a CUDA device was asked for on a machine without one (says so, and how to fall
            back).
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Device {name!r} was asked for but this machine has no usable CUDA GPU "
            "(or torch is the CPU build); use --device cpu or --device auto."
        )
    return dev
