"""What every model family's converter shares: the registries behind ``from_hf``/``to_hf``, the config
checks, and the name tables that move the weights.

A family declares its weights once, as a table of ``Rule``s: our parameter name pattern, the Hugging
Face name pattern, and (for rows stored in another order) a row permutation. ``{i}`` (layer) and
``{e}`` (expert) stand for numbers. ``translate`` renames a state dict with the table in either
direction and ``load_exact`` loads it, refusing any parameter left over or left out: a converter
cannot forget a weight silently, and both directions are the same table read two ways.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import ModelConfig

# --- the registries -------------------------------------------------------------------------------
CONVERTERS: dict[str, Callable] = {}  # Hugging Face class name → converter to ours
EXPORTERS: dict[str, Callable] = {}  # our attn_type ("dsa": MLA with DSA's indexer) → exporter to HF


def _registrar(registry: dict[str, Callable], doc: str):
    def decorator(*keys: str):
        def wrap(fn):
            registry.update(dict.fromkeys(keys, fn))
            return fn
        return wrap
    decorator.__doc__ = doc
    return decorator


register = _registrar(CONVERTERS, "Decorator ``@register(*hf_class_names)``: the converter ``from_hf`` "
                      "calls for Hugging Face models of these class names.")
exporter = _registrar(EXPORTERS, "Decorator ``@exporter(*attn_types)``: the exporter ``to_hf`` calls for "
                      "our models of these ``attn_type``s.")


def from_hf(hf_model, **overrides):
    """Our model with the weights of ``hf_model``; ``overrides`` change config fields we do not read
    from the Hugging Face config (e.g. ``attn_impl``)."""
    name = type(hf_model).__name__
    if name not in CONVERTERS:
        raise ValueError(f"from_hf does not support {name}; supported: {sorted(CONVERTERS)}")
    return CONVERTERS[name](hf_model, **overrides)


def to_hf(model, **kwargs):
    """Export our model to transformers: MLA models → ``DeepseekV3ForCausalLM`` (``deepseek_to_hf``),
    MLA with DSA's indexer → ``DeepseekV32ForCausalLM`` (``dsa_to_hf``), plain MHA/GQA models →
    ``LlamaForCausalLM`` (``llama_to_hf``)."""
    attn_type = "dsa" if model.config.is_sparse_attention else model.config.attn_type
    if attn_type not in EXPORTERS:
        raise ValueError(f"to_hf does not support attn_type={attn_type!r}; supported: {sorted(EXPORTERS)}")
    return EXPORTERS[attn_type](model, **kwargs)


# --- config checks and fields ---------------------------------------------------------------------
def check_fields(hf_cfg, **expected) -> None:
    """Raise ``ValueError`` naming the first Hugging Face config field that differs from ``expected``
    (a field the config does not have passes)."""
    for key, want in expected.items():
        have = getattr(hf_cfg, key, want)
        if have != want:
            raise ValueError(f"Hugging Face config field {key}={have!r} is not supported (need {want!r})")


def plain_rope_theta(hf_cfg, why: str = "") -> float:
    """RoPE's base of a Hugging Face config, after checking that the RoPE is plain (no scaling).

    transformers >= 5 keeps the settings in ``rope_parameters`` (``rope_type``, ``rope_theta``, scaling
    fields); older releases in ``rope_scaling`` (``None`` for plain RoPE; ``rope_type`` or the older
    ``type``) with ``rope_theta`` an attribute beside it. ``why`` extends the error message."""
    params = getattr(hf_cfg, "rope_parameters", None) or getattr(hf_cfg, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in (None, "default"):
        raise ValueError(f"rope_type={rope_type!r} (RoPE scaling) is not supported; only plain RoPE "
                         f"(rope_type='default') is implemented{why}")
    theta = params.get("rope_theta", getattr(hf_cfg, "rope_theta", None))
    if theta is None:
        raise ValueError("the Hugging Face config has no rope_theta")
    return float(theta)


# Hugging Face config field → our ModelConfig field, for what every decoder-only family has.
DECODER_FIELDS = {
    "vocab_size": "vocab_size", "hidden_size": "dim", "intermediate_size": "inter_dim",
    "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads", "rms_norm_eps": "norm_eps",
    "max_position_embeddings": "max_seq_len", "tie_word_embeddings": "tie_embeddings",
}


def read_config(hf_cfg, fields: dict[str, str], why: str = "", **changes) -> ModelConfig:
    """Our ``ModelConfig`` from a Hugging Face config: the ``fields`` table (theirs → ours), RoPE's
    base (``plain_rope_theta``), then ``changes``."""
    ours = {mine: getattr(hf_cfg, theirs) for theirs, mine in fields.items()}
    ours["tie_embeddings"] = bool(ours["tie_embeddings"])
    ours["rope_theta"] = plain_rope_theta(hf_cfg, why)
    ours.update(changes)
    return ModelConfig(**ours)


def write_config(config_class, cfg: ModelConfig, fields: dict[str, str], **changes):
    """A Hugging Face config of ``config_class`` from ours: the ``fields`` table read backwards, our
    RoPE base, no special tokens (our byte tokenizer has none), then ``changes``."""
    theirs = {hf_name: getattr(cfg, mine) for hf_name, mine in fields.items()}
    theirs.update(rope_theta=cfg.rope_theta, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    theirs.update(changes)
    return config_class(**theirs)


# --- the name tables ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One weight in both namings. ``rows``, when given, is the row order that turns the Hugging Face
    tensor into ours (``ours = theirs[rows]``; back: ``theirs = ours[rows.argsort()]``)."""

    ours: str
    theirs: str
    rows: torch.Tensor | None = field(default=None, compare=False)

    def source(self, to_hf: bool) -> re.Pattern:
        return _pattern(self.ours if to_hf else self.theirs)

    def target(self, to_hf: bool) -> str:
        return self.theirs if to_hf else self.ours

    def convert(self, t: torch.Tensor, to_hf: bool) -> torch.Tensor:
        if self.rows is None:
            return t
        rows = self.rows.argsort() if to_hf else self.rows
        return t[rows.to(t.device)]


@functools.cache
def _pattern(name: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", name)  # literal, placeholder, literal, ...
    regex = "".join(re.escape(p) if k % 2 == 0 else rf"(?P<{p}>\d+)" for k, p in enumerate(parts))
    return re.compile(regex)


def nested(rules: Sequence[Rule], ours: str, theirs: str) -> list[Rule]:
    """``rules`` for a submodule, moved under the prefixes ``ours`` and ``theirs``."""
    return [Rule(ours + r.ours, theirs + r.theirs, r.rows) for r in rules]


def renamed(pairs: Sequence[tuple[str, str]], ours: str = "", theirs: str = "") -> list[Rule]:
    """One rule per (our module, Hugging Face module) name pair for its ``weight``, under the prefixes."""
    return [Rule(f"{ours}{a}.weight", f"{theirs}{b}.weight") for a, b in pairs]


def swiglu(ours: str = "", theirs: str = "") -> list[Rule]:
    """A SwiGLU MLP: our (DeepSeek's) ``w1``/``w3``/``w2`` are Hugging Face's ``gate_proj``/``up_proj``/
    ``down_proj``: ``w2(silu(w1 x) · w3 x)``."""
    return renamed([("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")], ours, theirs)


def decoder_table(attention: Sequence[Rule], ffn: Sequence[Rule] = ()) -> list[Rule]:
    """The whole decoder-only model: embedding, per layer the two norms, the attention (``attention``,
    relative to it), the dense SwiGLU MLP (plus ``ffn``, relative to the feed-forward module), the final
    norm and the head."""
    layer = [Rule("attn_norm.weight", "input_layernorm.weight"),
             Rule("ffn_norm.weight", "post_attention_layernorm.weight"),
             *nested(attention, "attn.", "self_attn."), *nested([*swiglu(), *ffn], "ffn.", "mlp.")]
    return [Rule("tok_emb.weight", "model.embed_tokens.weight"), Rule("norm.weight", "model.norm.weight"),
            Rule("head.weight", "lm_head.weight"), *nested(layer, "layers.{i}.", "model.layers.{i}.")]


def translate(state: dict[str, torch.Tensor], table: Sequence[Rule], to_hf: bool,
              drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """``state`` renamed (and rows reordered) by ``table``: ours → Hugging Face if ``to_hf``, else back.
    Names starting with a ``drop`` prefix and empty tensors are left out; any other name without a
    rule raises."""
    out = {}
    for name, t in state.items():
        if name.startswith(drop) or t.numel() == 0:
            continue
        for rule in table:
            m = rule.source(to_hf).fullmatch(name)
            if m is not None:
                out[rule.target(to_hf).format(**m.groupdict())] = rule.convert(t, to_hf)
                break
        else:
            raise ValueError(f"no {'ours → Hugging Face' if to_hf else 'Hugging Face → ours'} rule for "
                             f"the parameter {name!r}")
    return out


@torch.no_grad()
def load_exact(module: nn.Module, state: dict[str, torch.Tensor], optional: tuple[str, ...] = ()) -> None:
    """Copy ``state`` into ``module``; every one of its (non-empty) parameters and buffers must be
    given, except names starting with an ``optional`` prefix, and every name in ``state`` used."""
    own = module.state_dict()
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [n for n in missing if own[n].numel() and not n.startswith(optional)]
    if missing or unexpected:
        raise RuntimeError(f"copying into {type(module).__name__} left parameters uncopied: {missing[:5]}; "
                           f"names it does not have: {unexpected[:5]}")


_FUSED = re.compile(r"(?P<base>(?:.*\.)?experts\.)(?P<kind>gate_up_proj|down_proj)")
_ONE_EXPERT = re.compile(r"(?P<base>(?:.*\.)?experts\.)(?P<e>\d+)\.(?P<proj>\w+_proj)\.weight")


def unfuse_experts(state: dict) -> dict:
    """transformers >= 5 stores a layer's experts as ``experts.gate_up_proj`` (E, 2I, D), [gate; up] per
    expert, and ``experts.down_proj`` (E, D, I); older releases a ModuleList of MLPs. The state with
    per-expert names (``experts.{e}.gate_proj.weight``, ...) either way: views, no copies."""
    out = {}
    for name, t in state.items():
        m = _FUSED.fullmatch(name)
        if m is None:
            out[name] = t
            continue
        parts = dict(zip(("gate_proj", "up_proj"), t.chunk(2, dim=1))) if m["kind"] == "gate_up_proj" \
            else {"down_proj": t}
        for proj, w in parts.items():
            out.update({f"{m['base']}{e}.{proj}.weight": w[e] for e in range(len(w))})
    return out


def fuse_experts(state: dict) -> dict:
    """The inverse of ``unfuse_experts``: per-expert names → the fused 3-D tensors of transformers >= 5."""
    out, experts = {}, defaultdict(dict)
    for name, t in state.items():
        m = _ONE_EXPERT.fullmatch(name)
        if m is None:
            out[name] = t
        else:
            experts[m["base"], m["proj"]][int(m["e"])] = t
    stacked = {key: torch.stack([ws[e] for e in range(len(ws))]) for key, ws in experts.items()}
    for base in {base for base, _ in stacked}:
        out[f"{base}gate_up_proj"] = torch.cat([stacked[base, "gate_proj"], stacked[base, "up_proj"]], dim=1)
        out[f"{base}down_proj"] = stacked[base, "down_proj"]
    return out


def copy_weights(target: nn.Module, state: dict[str, torch.Tensor], table: Sequence[Rule], to_hf: bool,
                 skip: tuple[str, ...] = ()) -> None:
    """The one copy loop: ``state`` (the source's state dict) renamed by ``table`` and loaded into
    ``target``, either direction. Fused experts are read per expert and fused again if ``target``
    fuses them; ``skip``: prefixes of our names that have no Hugging Face counterpart (MTP)."""
    state = translate(unfuse_experts(state), table, to_hf, drop=skip)
    if any(name.endswith("experts.gate_up_proj") for name in target.state_dict()):
        state = fuse_experts(state)
    load_exact(target, state, optional=skip)
