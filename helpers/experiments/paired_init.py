"""Initial weights that pair: every parameter drawn from its own generator, seeded by (run seed, its name).

``Transformer.__init__`` draws every weight from one global random stream, in the order the modules are
built. Two arms that differ only in attention then share no initial weight after the first attention
layer: a smaller ``wk`` takes fewer numbers from the stream and shifts every later module's draw. So the
seed-to-seed luck of the two arms is unrelated and a paired difference cancels nothing.

``paired_init(model, seed)`` re-draws each parameter from ``torch.Generator`` seeded by a hash of
``(seed, qualified parameter name)``, with the distribution ``Transformer._init_weights`` uses
(N(0, 0.02²) for every Linear and Embedding weight and the MoE router's centroids, zero biases; RMSNorm
gains stay at one). A parameter that two arms both have (same name, same shape) starts identical in both,
whatever else differs. It is opt-in: the committed sweeps that were made without it still reproduce.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import nn

from ..validate import check_int

STD = 0.02  # Transformer._init_weights' standard deviation
INIT = "paired_init (each parameter seeded by run seed and name)"  # what a sweep's meta["init"] records


def name_seed(seed: int, name: str) -> int:
    """A 63-bit generator seed from (run seed, parameter name): stable across runs, machines and Python
    versions (``hash()`` is salted per process, so it is not used)."""
    seed = check_int("seed", seed, min_value=0)
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator_for(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(name_seed(seed, name))


def _normal_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters ``_init_weights`` (and the MoE gate) draw from N(0, STD²), by qualified name."""
    from ..moe import Gate  # local: moe imports model-level modules

    out, seen = {}, set()
    for mod_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding, Gate)):
            p = module.weight
            if id(p) not in seen:  # a tied head shares the embedding's tensor: drawn once
                seen.add(id(p))
                out[f"{mod_name}.weight" if mod_name else "weight"] = p
    return out


@torch.no_grad()
def paired_init(model: nn.Module, seed: int, *, only: Callable[[str], bool] | None = None) -> nn.Module:
    """Re-initialise ``model`` in place (and return it): each N(0, STD²) weight from ``generator_for(seed,
    name)``, biases of Linear layers to zero. Other parameters (norm gains) are constructed deterministically
    and are left as they are. ``only``: re-draw just the weights whose qualified name it accepts (biases
    untouched), e.g. one module's weights from another seed."""
    for name, p in _normal_params(model).items():
        if only is not None and not only(name):
            continue
        values = torch.randn(p.shape, generator=generator_for(seed, name), dtype=torch.float32) * STD
        p.copy_(values.to(device=p.device, dtype=p.dtype))
    for module in model.modules() if only is None else ():
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.zero_()
    return model
