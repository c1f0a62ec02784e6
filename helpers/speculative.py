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
def teacher_forced_acceptance(model, idx: torch.Tensor, targets: torch.Tensor) -> float:
    """How often module 1's draft would be accepted on real text: the fraction of positions i where
    its greedy guess for t_{i+2} equals the main model's greedy guess at position i+1 (given the true
    t_{i+1}). Unlike the decoding acceptance rate it is not flattered by repetitive greedy output."""
    if getattr(model, "mtp", None) is None:
        raise ValueError(f"the model has mtp_depth={model.config.mtp_depth}; nothing drafts")
    out = model.run(idx, targets=targets)
    main = out.logits.argmax(-1)[:, 1:]  # (B, T-1): main model's guess for t_{i+2} at position i+1
    draft = out.mtp.logits[0].argmax(-1)  # (B, T-1): module 1's guess for t_{i+2} at position i
    return (main == draft).float().mean().item()


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


def speculative_generate(model, idx: torch.Tensor, max_new_tokens: int) -> SpeculativeResult:
    """Greedy decoding of ``max_new_tokens`` tokens after ``idx`` (1, T), drafting with MTP module 1."""
    check_speculative(model, idx, max_new_tokens)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            result = _speculate(model, idx, max_new_tokens)
    finally:
        model.train(was_training)
    result.tokens = result.tokens.clone()  # an ordinary tensor again, outside inference mode
    return result


def _speculate(model, idx: torch.Tensor, n_target: int) -> SpeculativeResult:
    if n_target == 0:
        return SpeculativeResult(idx, 0, 0, 0, 0)
    max_len = idx.shape[1] + n_target  # no forward pass ever holds more positions than this
    cache = model.new_cache(static=True, max_len=max_len)
    mtp_cache = model.mtp.new_cache(model.config, max_len)
    as_ids = lambda ids: torch.tensor([ids], dtype=idx.dtype, device=idx.device)  # noqa: E731  (1, n)
    # prefill: the prompt through the main model, then (if a draft can still help) through MTP module 1
    out = model.run(idx, cache=cache)
    check_finite_logits(out.logits[0, -1], 0)
    new = [int(out.logits[0, -1].argmax())]  # t_T, the main model's greedy token
    forwards, drafted, accepted, mask = 1, 0, 0, [False]
    draft = None
    if n_target >= 3:  # a draft pays only when at least two more tokens are wanted
        ahead = torch.cat([idx[:, 1:], as_ids(new)], dim=1)  # (1, T): t_{i+1} for every prompt position i
        draft = int(model.mtp.draft_logits(model, out.hidden, ahead, mtp_cache)[0, -1].argmax())
    while len(new) < n_target:
        if draft is None:  # the last token: a plain cached step
            out = model.run(as_ids(new[-1:]), cache=cache)
            check_finite_logits(out.logits, len(new))
            new.append(int(out.logits[0, -1].argmax()))
            forwards += 1
            mask.append(False)
            continue
        m = cache.length  # position of the committed-but-unfed token t_m
        out = model.run(as_ids([new[-1], draft]), cache=cache)  # logits (1, 2, V)
        check_finite_logits(out.logits, len(new))
        forwards += 1
        drafted += 1
        greedy = out.logits[0].argmax(-1).tolist()  # the main model's choices after t_m and after d
        if greedy[0] == draft:
            accepted += 1
            fresh = greedy  # d (confirmed) and the token after it
            hidden = out.hidden  # (1, 2, D): positions m and m+1 are both final
            mask += [True, False]
        else:
            fresh = greedy[:1]  # the main model's own token replaces the draft
            cache.crop(m + 1)  # forget the draft's position
            hidden = out.hidden[:, :1]  # (1, 1, D): position m never saw the draft (causal)
            mask.append(False)
        new += fresh
        draft = None
        if n_target - len(new) >= 2:
            logits = model.mtp.draft_logits(model, hidden, as_ids(fresh), mtp_cache)  # (1, n, V)
            draft = int(logits[0, -1].argmax())  # guess for the token after the newest one
    tokens = torch.cat([idx, as_ids(new)], dim=1)  # (1, T + n)
    return SpeculativeResult(tokens, n_target, forwards, drafted, accepted, mask)
