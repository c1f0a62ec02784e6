"""The one place that chooses a device. Override with the environment variable ``COURSE_DEVICE``."""

from __future__ import annotations

import os

import torch

ENV_VAR = "COURSE_DEVICE"


def pick_device(prefer: str | None = None) -> torch.device:
    """``prefer``, else ``$COURSE_DEVICE``, else CUDA, then Apple's MPS, then the CPU."""
    choice = prefer or os.environ.get(ENV_VAR)
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{ENV_VAR}={choice!r} asks for CUDA, but torch sees no CUDA device")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"{ENV_VAR}={choice!r} asks for MPS, but it is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (all devices) and return a CPU generator for data sampling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
