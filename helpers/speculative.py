"""Self-speculative greedy decoding with the MTP module as the drafter (DeepSeek-V3 §2.2, §5.4.3).

Plain cached greedy decoding (``helpers.generate``) spends one main-model forward pass per token.
Here MTP module 1, which predicts the token *after next*, drafts it for free from the hidden state
the main model just produced; the next main forward pass then checks the draft while it computes
the following token anyway:

    committed t_0 .. t_m (t_m chosen but not yet fed), draft d for t_{m+1}
    main forward on [t_m, d] (2 positions, with the KV cache) -> greedy a_0 = t_{m+1}, a_1
    a_0 == d : accept, t_{m+1} = d and t_{m+2} = a_1       (2 tokens for one forward pass)
    a_0 != d : reject, t_{m+1} = a_0, crop d off the cache  (1 token, as plain decoding)

Either way every emitted token is the main model's own argmax given the tokens before it, so the
output is identical to plain greedy decoding (``tests/test_speculative.py`` checks it); speculation
only changes how many forward passes it takes. The MTP block keeps its own cache, and only ever
receives positions whose inputs are final, so it never needs rolling back. Like the plain cached
loop in ``helpers.generate`` it runs under ``torch.inference_mode()`` with pre-allocated caches, so
the two are compared on equal terms.

Stats: acceptance rate = accepted / drafted; tokens per forward = new tokens / main forward passes
(prefill included; plain cached greedy decoding has exactly 1). Greedy only, batch of one.

Shape letters (``docs/GLOSSARY.md``): B batch (1 here), T prompt length, n new positions, D model width,
V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .decode_plan import DecodePlan, DraftPlan
from .generate import check_request
from .validate import check_finite_logits


@dataclass
class SpeculativeResult:
    tokens: torch.Tensor  # (1, T + n) prompt followed by the new tokens
    new_tokens: int  # n
    forward_passes: int  # main-model forward passes, the prefill included
    drafted: int  # drafts the main model checked
    accepted: int  # drafts it confirmed
    accepted_mask: list[bool] = field(default_factory=list)  # per new token: was it an accepted draft?

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else float("nan")

    @property
    def tokens_per_forward(self) -> float:
        return self.new_tokens / self.forward_passes if self.forward_passes else float("nan")


@torch.no_grad()
def teacher_forced_acceptance(model, idx: torch.Tensor, targets: torch.Tensor, start: int = 0) -> float:
    """How often module 1's draft would be accepted on real text: the fraction of positions i where
    its greedy guess for t_{i+2} equals the main model's greedy guess at position i+1 (given the true
    t_{i+1}). Unlike the decoding acceptance rate it does not depend on which text greedy decoding
    happens to produce. ``start``: count only the drafts for tokens from position ``start`` of
    ``idx`` on (i + 2 >= start), e.g. a greedy continuation after its prompt."""
    if getattr(model, "mtp", None) is None:
        raise ValueError(f"the model has mtp_depth={model.config.mtp_depth}; nothing drafts")
    out = model.run(idx, targets=targets)
    main = out.logits.argmax(-1)[:, 1:]  # (B, T-1): main model's guess for t_{i+2} at position i+1
    draft = out.mtp.logits[0].argmax(-1)  # (B, T-1): module 1's guess for t_{i+2} at position i
    first = max(start - 2, 0)  # the draft at position i is for the token at i+2
    return (main[:, first:] == draft[:, first:]).float().mean().item()


def check_speculative(model, idx: torch.Tensor, max_new_tokens: int) -> None:
    if getattr(model, "mtp", None) is None or model.config.mtp_depth < 1:
        raise ValueError(f"self-speculative decoding needs MTP modules to draft with, but the model has "
                         f"mtp_depth={model.config.mtp_depth}; build it with mtp_depth >= 1")
    if getattr(model.mtp, "target_shift", 0) != 0:
        raise ValueError(f"the MTP modules are wired with target_shift={model.mtp.target_shift}; only "
                         "the correct wiring (0) drafts the token after next")
    check_request(model, idx, max_new_tokens)
    if idx.shape[0] != 1:
        raise ValueError(f"speculative decoding here handles one sequence at a time, got batch "
                         f"B={idx.shape[0]} (rows would accept different numbers of drafts)")


def speculative_generate(model, idx: torch.Tensor, max_new_tokens: int, *, fast: bool = True
                         ) -> SpeculativeResult:
    """Greedy decoding of ``max_new_tokens`` tokens after ``idx`` (1, T), drafting with MTP module 1.

    A model the flat decode step covers (``helpers.decode_plan``: MHA/GQA/MQA or absorbed MLA, dense or
    MoE layers, float32) runs through it, main model and drafter alike, unless ``fast=False`` (the
    readable modules; tested equal), as ``helpers.generate`` does, so the two loops are compared on
    equal terms."""
    check_speculative(model, idx, max_new_tokens)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            max_len = idx.shape[1] + max_new_tokens  # no forward pass ever holds more positions
            result = _speculate(decode_steps(model, max_len, fast), idx, max_new_tokens)
    finally:
        model.train(was_training)
    result.tokens = result.tokens.clone()  # an ordinary tensor again, outside inference mode
    return result


def decode_steps(model, max_len: int, fast: bool = True):
    """The loop's three moves (``main``, ``crop``, ``draft``) for ``model``, with caches of ``max_len``
    positions: through ``helpers.decode_plan`` where it covers the model and ``fast`` is set, else
    through the model's own modules. Call under ``torch.inference_mode()``."""
    if fast and DecodePlan.unsupported(model) is None and DraftPlan.unsupported(model) is None:
        return _LeanSteps(model, max_len)
    return _ReadableSteps(model, max_len)


class _ReadableSteps:
    """The loop's three moves through the model's own modules and caches."""

    def __init__(self, model, max_len: int):
        self.model = model
        self.cache = model.new_cache(static=True, max_len=max_len)
        self.mtp_cache = model.mtp.new_cache(model.config, max_len)

    @property
    def length(self) -> int:
        return self.cache.length

    def main(self, ids: torch.Tensor):
        """(1, n) ids → (logits (n, V), hidden (1, n, D)) of the main model, cached."""
        out = self.model.run(ids, cache=self.cache)
        return out.logits[0], out.hidden

    def crop(self, length: int) -> None:
        self.cache.crop(length)

    def draft(self, hidden: torch.Tensor, ahead: torch.Tensor) -> torch.Tensor:
        """MTP module 1 over n new positions → (V,) logits for the token after the last one's next."""
        return self.model.mtp.draft_logits(self.model, hidden, ahead, self.mtp_cache)[0, -1]

    def crop_draft(self, length: int) -> None:
        """Forget the drafter's positions from ``length`` on (only benchmarks need this)."""
        self.mtp_cache.crop(length)


class _LeanSteps:
    """The same three moves through ``helpers.decode_plan`` (pre-arranged weights, pre-allocated
    caches)."""

    def __init__(self, model, max_len: int):
        self.plan, self.drafter = DecodePlan(model, 1, max_len), DraftPlan(model, max_len)

    @property
    def length(self) -> int:
        return self.plan.length

    def main(self, ids: torch.Tensor):
        hidden = self.plan.step(ids)  # (1, n, D)
        return self.plan.logits(hidden[0]), hidden

    def crop(self, length: int) -> None:
        self.plan.crop(length)

    def draft(self, hidden: torch.Tensor, ahead: torch.Tensor) -> torch.Tensor:
        return self.drafter.draft(hidden, ahead)

    def crop_draft(self, length: int) -> None:
        self.drafter.crop(length)


def _speculate(steps, idx: torch.Tensor, n_target: int) -> SpeculativeResult:
    if n_target == 0:
        return SpeculativeResult(idx, 0, 0, 0, 0)
    as_ids = lambda ids: torch.tensor([ids], dtype=idx.dtype, device=idx.device)  # noqa: E731  (1, n)
    seen = []  # (generation step, logits) of every main pass: checked for NaN/inf once, at the end
    # prefill: the prompt through the main model, then (if a draft can still help) through MTP module 1
    logits, hidden = steps.main(idx)
    seen.append((0, logits[-1:]))
    new = [int(logits[-1].argmax())]  # t_T, the main model's greedy token
    forwards, drafted, accepted, mask = 1, 0, 0, [False]
    draft = None
    if n_target >= 3:  # a draft pays only when at least two more tokens are wanted
        ahead = torch.cat([idx[:, 1:], as_ids(new)], dim=1)  # (1, T): t_{i+1} for every prompt position i
        draft = int(steps.draft(hidden, ahead).argmax())
    while len(new) < n_target:
        if draft is None:  # the last token: a plain cached step
            logits, _ = steps.main(as_ids(new[-1:]))
            seen.append((len(new), logits))
            new.append(int(logits[-1].argmax()))
            forwards += 1
            mask.append(False)
            continue
        m = steps.length  # position of the committed-but-unfed token t_m
        logits, hidden = steps.main(as_ids([new[-1], draft]))  # logits (2, V)
        seen.append((len(new), logits))
        forwards += 1
        drafted += 1
        greedy = logits.argmax(-1).tolist()  # the main model's choices after t_m and after d
        if greedy[0] == draft:
            accepted += 1
            fresh = greedy  # d (confirmed) and the token after it
            mask += [True, False]  # positions m and m+1 are both final: hidden stays (1, 2, D)
        else:
            fresh = greedy[:1]  # the main model's own token replaces the draft
            steps.crop(m + 1)  # forget the draft's position
            hidden = hidden[:, :1]  # (1, 1, D): position m never saw the draft (causal)
            mask.append(False)
        new += fresh
        draft = None
        if n_target - len(new) >= 2:
            draft = int(steps.draft(hidden, as_ids(fresh)).argmax())  # the token after the newest one
    _check_passes(seen)
    tokens = torch.cat([idx, as_ids(new)], dim=1)  # (1, T + n)
    return SpeculativeResult(tokens, n_target, forwards, drafted, accepted, mask)


def _check_passes(seen: list) -> None:
    """``check_finite_logits`` for every main pass at once (two operator calls instead of two per pass),
    naming the first bad generation step. Argmax simply picks a NaN's index, so the loop can run on and
    be checked at the end, as the plain greedy loop is; the caller gets the same error either way."""
    if bool(torch.isfinite(torch.cat([logits for _, logits in seen])).all()):
        return
    for step, logits in seen:
        check_finite_logits(logits, step)
