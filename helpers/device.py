"""The one place that chooses a device. Override with the environment variable ``COURSE_DEVICE``."""

from __future__ import annotations

import os

import torch

from .validate import InputTypeError

ENV_VAR = "COURSE_DEVICE"


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """``prefer``, else ``$COURSE_DEVICE``, else CUDA, then Apple's MPS, then the CPU.

    An explicit choice that this machine cannot honour (``"cuda"`` on a CPU-only torch, a misspelt
    name) raises ``ValueError`` naming where the choice came from and what is available."""
    if prefer is not None:
        choice, source = prefer, f"device={str(prefer)!r}"
    else:
        choice, source = os.environ.get(ENV_VAR) or None, f"{ENV_VAR}={os.environ.get(ENV_VAR)!r}"
    if choice is not None:
        return _checked(choice, source)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def _checked(choice, source: str) -> torch.device:
    hint = (f"this machine offers {available_devices()}; pass one of them, or leave the choice to "
            f"pick_device() (unset {ENV_VAR}, or set it to one of them)")
    if not isinstance(choice, (str, torch.device)):
        raise InputTypeError(f"{source}: a device must be a string such as 'cpu' or a torch.device, "
                        f"got {type(choice).__name__}")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise ValueError(f"{source} is not a device name; {hint}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{source} asks for CUDA, but this torch sees no CUDA device "
                             f"(a CPU-only build, or no GPU); {hint}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{source} asks for GPU {device.index}, but there are "
                             f"{torch.cuda.device_count()}; {hint}")
    elif device.type == "mps" and not _mps_available():
        raise ValueError(f"{source} asks for Apple's MPS, but it is not available; {hint}")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{source}: the course runs on cpu, cuda or mps, not {device.type}; {hint}")
    return device


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (all devices) and return a CPU generator for data sampling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
