"""DeepSeek-V3 MTP modules: bookkeeping, causality, sharing, loss weighting and the label-leak trap."""

import pytest
import torch

from helpers import load_corpus, train
from helpers.config import preset
from helpers.model import Transformer
from helpers.mtp import MTP, MTPCache, depth_inputs


def shifted(idx: torch.Tensor) -> torch.Tensor:
    """targets = idx shifted left by one, the last position ignored (as a batch without a next token)."""
    targets = torch.roll(idx, -1, dims=1)
    targets[:, -1] = -100
    return targets


def test_depth_k_predicts_k_plus_one_ahead():
    # tokens are their own positions, so "what is depth k asked for at position i" is readable
    T = 12
    idx = torch.arange(T).unsqueeze(0)  # t_j = j
    targets = idx + 1  # t_{j+1}, as corpus.get_batch makes them
    for k in (1, 2, 3):
        seen, wanted = depth_inputs(idx, targets, k)
        i = torch.arange(T - k)
        assert torch.equal(seen[0], i + k)  # embeds t_{i+k}
        assert torch.equal(wanted[0], i + k + 1)  # predicts t_{i+k+1}
    leak_seen, leak_wanted = depth_inputs(idx, targets, 1, target_shift=-1)
    assert torch.equal(leak_seen, leak_wanted)  # the leak: asked for the token it embeds
    _, far = depth_inputs(idx, targets, 1, target_shift=1)
    assert torch.equal(far[0], torch.arange(T - 2) + 3)  # one too far: t_{i+3}


def test_forward_shapes_and_what_each_depth_predicts():
    cfg = preset("test", mtp_depth=3)
    model = Transformer(cfg)
    B, T = 2, 16
    idx = torch.randint(0, cfg.vocab_size, (B, T))
    out = model.run(idx, targets=shifted(idx))
    res = out.mtp
    assert len(res.depth_losses) == len(res.logits) == cfg.mtp_depth
    for k in range(1, cfg.mtp_depth + 1):
        assert res.logits[k - 1].shape == (B, T - k, cfg.vocab_size)
        assert res.hidden[k - 1].shape == (B, T - k, cfg.dim)
        assert torch.equal(res.inputs[k - 1], idx[:, k:])  # t_{i+k}
        # t_{i+k+1}: the input sequence k+1 ahead, the very last one unknown (ignored)
        assert torch.equal(res.targets[k - 1][:, :-1], idx[:, k + 1:])
        assert (res.targets[k - 1][:, -1] == -100).all()


@pytest.mark.parametrize("k", [1, 2])
def test_causality_depth_k_sees_only_up_to_t_i_plus_k(k):
    cfg = preset("test", mtp_depth=2)
    model = Transformer(cfg).eval()
    T = 14
    idx = torch.randint(0, cfg.vocab_size, (1, T))
    base = model.run(idx, targets=shifted(idx)).mtp.logits[k - 1]  # (1, T-k, V)
    for cut in (4, 7, 10):  # change every token from t_cut on
        changed = idx.clone()
        changed[0, cut:] = (changed[0, cut:] + 1 + torch.arange(T - cut)) % cfg.vocab_size
        new = model.run(changed, targets=shifted(changed)).mtp.logits[k - 1]
        keep = cut - k  # positions i with i + k < cut saw none of the changed tokens
        torch.testing.assert_close(new[:, :keep], base[:, :keep])
        # and position i = cut - k, which embeds the changed t_{i+k}, does change
        assert not torch.allclose(new[:, keep], base[:, keep])


def test_shares_embedding_and_head_with_the_main_model():
    cfg = preset("test", mtp_depth=2)
    model = Transformer(cfg)
    mtp_params = {id(p) for p in model.mtp.parameters()}
    assert id(model.tok_emb.weight) not in mtp_params and id(model.head.weight) not in mtp_params
    V, D = cfg.vocab_size, cfg.dim
    assert all(p.shape not in {(V, D), (D, V)} for p in model.mtp.parameters())  # no private copies
    # the MTP loss alone trains the shared embedding and head
    idx = torch.randint(0, V, (2, 12))
    model.run(idx, targets=shifted(idx)).mtp_loss.backward()
    assert model.tok_emb.weight.grad.abs().sum() > 0 and model.head.weight.grad.abs().sum() > 0
    # each module has its own final norm; the main model's final norm gets no gradient from MTP
    assert model.norm.weight.grad is None or model.norm.weight.grad.abs().sum() == 0
    assert all(m.norm.weight.grad.abs().sum() > 0 for m in model.mtp.layers)
    # the parameters MTP adds: per module two input norms, M_k, one block and an output norm
    plain = Transformer(cfg.replace(mtp_depth=0))
    per_module = sum(p.numel() for p in model.mtp.layers[0].parameters())
    block = sum(p.numel() for p in plain.layers[0].parameters())
    assert per_module == 3 * D + 2 * D * D + block
    assert model.num_params() == plain.num_params() + cfg.mtp_depth * per_module


def test_loss_is_lambda_over_depth_times_the_sum():
    cfg = preset("test", mtp_depth=3, mtp_lambda=0.3)
    model = Transformer(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 16))
    out = model.run(idx, targets=shifted(idx))
    expected = 0.3 / 3 * sum(out.mtp.depth_losses)
    torch.testing.assert_close(out.mtp_loss, expected)
    torch.testing.assert_close(out.loss, out.main_loss + out.aux_loss + expected)
    # each depth loss is plain cross-entropy of its logits against its targets
    for lg, tg, lk in zip(out.mtp.logits, out.mtp.targets, out.mtp.depth_losses):
        torch.testing.assert_close(lk, torch.nn.functional.cross_entropy(lg.flatten(0, 1), tg.flatten(),
                                                                          ignore_index=-100))
    # doubling λ doubles the MTP term and nothing else
    model.mtp.lam = 0.6
    torch.testing.assert_close(model.run(idx, targets=shifted(idx)).mtp_loss, 2 * expected)


def test_depth_zero_loss_is_the_plain_loss_and_main_logits_do_not_change():
    plain = Transformer(preset("test"))
    with_mtp = Transformer(preset("test", mtp_depth=2))
    missing, unexpected = with_mtp.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("mtp.") for name in missing)
    idx = torch.randint(0, 256, (2, 12))
    a, b = plain.run(idx, targets=shifted(idx)), with_mtp.run(idx, targets=shifted(idx))
    assert plain.mtp is None and a.mtp_loss is None and torch.equal(a.loss, a.main_loss + a.aux_loss)
    torch.testing.assert_close(b.logits, a.logits)
    torch.testing.assert_close(b.main_loss, a.main_loss)
    assert b.loss > a.loss  # the MTP term is added on top


def test_incremental_drafts_equal_the_full_forward():
    cfg = preset("test", mtp_depth=1)
    model = Transformer(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (1, 15))
    full = model.run(idx, targets=shifted(idx))
    cache, mtp_cache = model.new_cache(), MTPCache(cfg)
    pieces = []
    for lo, hi in [(0, 6), (6, 7), (7, 9), (9, 14)]:  # prefill, then 1 or 2 positions at a time
        h = model.run(idx[:, lo:hi], cache=cache).hidden
        pieces.append(model.mtp.draft_logits(model, h, idx[:, lo + 1:hi + 1], mtp_cache))
    torch.testing.assert_close(torch.cat(pieces, dim=1), full.mtp.logits[0], atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    cfg = preset("test", mtp_depth=2)
    model = Transformer(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 8))
    with pytest.raises(ValueError, match="mtp_depth"):
        MTP(preset("test"))
    with pytest.raises(ValueError, match="target_shift"):
        MTP(cfg, target_shift=2)
    with pytest.raises(ValueError, match="shifted left by one"):
        model.mtp(model, model.run(idx).hidden, idx, idx)  # targets not shifted: caught
    with pytest.raises(ValueError, match="needs targets"):
        model.mtp(model, model.run(idx).hidden, idx, None)
    with pytest.raises(ValueError, match="T=2"):
        short = idx[:, :2]
        model.run(short, targets=shifted(short))  # depth 2 needs T > 2


def _train_mtp(target_shift: int, steps: int) -> tuple[float, Transformer]:
    torch.manual_seed(0)
    model = Transformer(preset("test", mtp_depth=1, mtp_lambda=1.0))
    model.mtp.target_shift = target_shift
    losses = []
    train(model, load_corpus(), steps=steps, batch_size=8, seq_len=32, lr=1e-2, warmup=5, eval_every=steps,
          eval_iters=1, seed=0, progress=False, device="cpu",
          callback=lambda step, out, batch: losses.append(out.mtp.depth_losses[0].item()))
    return sum(losses[-5:]) / 5, model


def test_label_leak_collapses_the_loss_and_learns_nothing_useful():
    correct, good = _train_mtp(0, 60)
    leaky, bad = _train_mtp(-1, 60)
    # the leak: copying the input token is trivial, the loss drops far below the honest one
    assert leaky < 0.25 * correct, (leaky, correct)
    # ... and it learned nothing useful: asked for the token after next, it copies its input token,
    # so it is no better than the "copy t_{i+1}" rule, which the honest module beats
    batch = load_corpus().get_batch("val", 8, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        bad.mtp.target_shift = 0
        good_res, bad_res = good.run(batch.x, targets=batch.y).mtp, bad.run(batch.x, targets=batch.y).mtp
    copy_rule = (good_res.inputs[0] == good_res.targets[0]).float().mean().item()
    copies = (bad_res.logits[0].argmax(-1) == bad_res.inputs[0]).float().mean().item()
    assert copies > 0.9, copies
    assert bad_res.accuracy[0] <= copy_rule + 0.02 < good_res.accuracy[0], (bad_res.accuracy, copy_rule)


@pytest.mark.slow
def test_predicting_one_token_too_far_makes_the_loss_worse():
    correct, _ = _train_mtp(0, 80)
    too_far, _ = _train_mtp(1, 80)
    assert too_far > correct, (too_far, correct)


def test_an_moe_mtp_block_adds_its_balance_loss():
    cfg = preset("test", n_routed_experts=4, n_activated_experts=2, balance="aux", mtp_depth=1)
    model = Transformer(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 12))
    res = model.run(idx, targets=shifted(idx)).mtp
    assert len(res.moe) == 1 and res.balance_loss > 0
    torch.testing.assert_close(res.loss, cfg.mtp_lambda * res.depth_losses[0] + res.balance_loss)
