"""The assembled model as a block diagram, drawn from its configuration (lesson 06).

In the spirit of the DeepSeek-V3 Technical Report (arXiv 2412.19437), Figure 2 (the block: MLA and
DeepSeekMoE) and Figure 3 (the MTP modules beside the main model), but drawn from a ``ModelConfig`` so
every label carries the model's own numbers. Left to right:

* the main model: input tokens → embedding → L transformer blocks (dense MLP in the first
  ``n_dense_layers``, DeepSeekMoE after when ``n_routed_experts > 0``) → final RMSNorm → output head →
  next-token loss;
* when ``mtp_depth > 0``: the MTP module beside it (Eq. 21-25): RMSNorm of the main model's last hidden
  state h^0 and of the embedding of the token one ahead, concatenated, projected 2D → D, one transformer
  block, its own RMSNorm, then the *shared* embedding and output head, predicting the token after next;
* one block expanded (pre-norm: RMSNorm → attention → residual add → RMSNorm → FFN → residual add);
* the block's two mechanisms in detail: attention (MLA with the latent c^KV of width Dc and the decoupled
  RoPE key of width Dr, the two things it caches; or MHA / GQA / MQA with G key/value heads) and the FFN
  (DeepSeekMoE: the router scoring E routed experts, adding the selection bias b_i, choosing K, plus Ns
  shared experts; or the dense SwiGLU MLP).

Matplotlib only (patches, arrows, mathtext), no image assets. ``draw_architecture(cfg)`` returns the
Figure; every box is a ``FancyBboxPatch`` whose gid names its part (``"mtp"`` for the MTP module's boxes,
``"cached"`` for what attention caches), so tests and notebooks can find them.

Letters (``docs/GLOSSARY.md``): D width, L blocks (the report's Figure 2 letter; the glossary's l), H query
heads, G KV heads, Dh head width, Dq / Dc query / KV latent width, Dn / Dr non-RoPE / RoPE head part, Dv
value head width, I SwiGLU hidden width, E routed experts, K chosen per token, Ns shared experts, Ng / Mg
expert groups / groups kept, Dm MTP depth, V vocabulary.
"""

from __future__ import annotations

from ..config import ModelConfig
from ..validate import InputTypeError
from .pen import FONT, Box, Pen, feed, panel_title, tint  # noqa: F401  (Box, FONT: old names)
from .style import PALETTE, expert_colors

# One colour per part, from the course palette where the part is a mechanism of a lesson.
COLORS = {
    "io": "#4d4d4d",  # tokens, embedding, output head (near-black edge, light fill)
    "norm": PALETTE["init"],  # RMSNorm
    "main": PALETTE["main"],  # the main model and its next-token loss
    "MTP": PALETTE["MTP"],
    "MLA": PALETTE["MLA"],
    "MHA": PALETTE["MHA"],
    "GQA": PALETTE["GQA"],
    "MQA": PALETTE["MQA"],
    "MoE": PALETTE["loss_free"],  # DeepSeekMoE with its bias balancing
    "dense": PALETTE["baseline"],  # the dense MLP: the block without the MoE mechanism
    "shared": "#937860",  # shared experts
}


# --- the parts' names and labels, from the configuration ------------------------------------------------
def attention_name(cfg: ModelConfig) -> str:
    """"MLA", "MHA", "GQA" or "MQA", as the configuration builds it."""
    if cfg.attn_type == "mla":
        return "MLA"
    G, H = cfg.kv_heads, cfg.n_heads
    return "MHA" if G == H else ("MQA" if G == 1 else "GQA")


def _block_label(cfg: ModelConfig, i: int) -> str:
    ffn = "MoE" if cfg.layer_is_moe(i) else "dense MLP"
    return f"{attention_name(cfg)} + {ffn}"


def _expanded_block(cfg: ModelConfig) -> int:
    """The block drawn expanded: the first MoE block if there is one, else block 0."""
    return cfg.n_dense_layers if cfg.is_moe and cfg.n_dense_layers < cfg.n_layers else 0


def _layer_range(first: int, last: int) -> str:
    return f"block {first}" if first == last else f"blocks {first}–{last}"


# --- the columns --------------------------------------------------------------------------------------
# Rows shared by the main model and the MTP module (y of each box's bottom, and its height).
ROW_TOKENS, ROW_EMB, ROW_BLOCKS, ROW_NORM, ROW_HEAD, ROW_LOSS = (0.15, 0.3), (0.65, 0.4), (1.25, 2.5), \
    (3.95, 0.32), (4.47, 0.4), (5.07, 0.42)
TOP = 5.5  # the columns' upper edge; column titles above it, the figure title above those


def _main_model(pen: Pen, cfg: ModelConfig, x: float, w: float) -> dict[str, Box]:
    """Input tokens → embedding → L blocks → RMSNorm → head → next-token loss; returns the boxes."""
    io, boxes = COLORS["io"], {}
    V, D = cfg.vocab_size, cfg.dim
    boxes["tokens"] = pen.box(x, ROW_TOKENS[0], w, ROW_TOKENS[1], r"input tokens $t_1 \ldots t_T$", io,
                              fill=0.95)
    boxes["emb"] = pen.box(x, ROW_EMB[0], w, ROW_EMB[1], f"embedding\nV = {V} → D = {D}", io)
    # the blocks: one box each up to 8 blocks, else one box for the dense ones and one for the MoE ones
    L, nd = cfg.n_layers, min(cfg.n_dense_layers, cfg.n_layers) if cfg.is_moe else cfg.n_layers
    groups = ([(i, i) for i in range(L)] if L <= 8 else
              [(a, b) for a, b in ((0, nd - 1), (nd, L - 1)) if a <= b])  # (first, last) block of each box
    y0, total, gap = ROW_BLOCKS[0], ROW_BLOCKS[1], 0.1
    h = (total - gap * (len(groups) - 1)) / len(groups)
    expanded = _expanded_block(cfg)
    for n, (first, last) in enumerate(groups):
        color = COLORS["MoE"] if cfg.layer_is_moe(first) else COLORS["dense"]
        label = f"{_layer_range(first, last)}: {_block_label(cfg, first)}"
        if first <= expanded <= last:
            label += "  ◆"
        b = pen.box(x, y0 + n * (h + gap), w, h, label, color, fill=0.85,
                    lw=1.6 if first <= expanded <= last else 1.1)
        if n:
            pen.arrow((x + w / 2, b.y - gap), (x + w / 2, b.y))
        boxes["first_block" if n == 0 else "last_block"] = b
    boxes.setdefault("last_block", boxes["first_block"])
    pen.text(x - 0.2, y0 + total / 2, f"L = {L} transformer blocks", rotation=90, fontsize=9)
    pen.ax.plot([x - 0.08] * 2, [y0, y0 + total], color="#444444", lw=1.0)
    boxes["norm"] = pen.box(x, ROW_NORM[0], w, ROW_NORM[1], "final RMSNorm", COLORS["norm"])
    boxes["head"] = pen.box(x, ROW_HEAD[0], w, ROW_HEAD[1], f"output head\nD = {D} → V = {V}", io)
    boxes["loss"] = pen.box(x, ROW_LOSS[0], w, ROW_LOSS[1], r"next-token loss $L_{main}$" + "\n"
                            + r"predicts $t_{i+1}$", COLORS["main"], fill=0.75)
    chain = ("tokens", "emb", "first_block", None, "last_block", "norm", "head", "loss")  # None: the stack
    for lower, upper in zip(chain, chain[1:]):
        if lower and upper:
            pen.arrow((x + w / 2, boxes[lower].top), (x + w / 2, boxes[upper].y))
    return boxes


def _mtp_module(pen: Pen, cfg: ModelConfig, x: float, w: float, main: dict[str, Box]) -> None:
    """MTP module k (Eq. 21-25) beside the main model, sharing its embedding and output head."""
    c, gid, io = COLORS["MTP"], "mtp", COLORS["io"]
    D, Dm = cfg.dim, cfg.mtp_depth
    if Dm > 1:  # a shadow for each further sequential module
        for s in range(min(Dm - 1, 3), 0, -1):
            pen.outline(x - 0.1 + 0.05 * s, 0.05 - 0.05 * s, w + 0.2, TOP - 0.05, c)
    pen.outline(x - 0.1, 0.05, w + 0.2, TOP - 0.05, c, gid=gid)
    pen.box(x, ROW_TOKENS[0], w, ROW_TOKENS[1], r"tokens one ahead $t_{i+k}$", io, fill=0.95, gid=gid)
    emb = pen.box(x, ROW_EMB[0], w, ROW_EMB[1], "embedding (shared)", io, gid=gid)
    half = (w - 0.1) / 2
    y_norm, h_norm = ROW_BLOCKS[0], 0.42
    norm_h = pen.box(x, y_norm, half, h_norm, r"RMSNorm($h^{k-1}$)", COLORS["norm"], fontsize=8, gid=gid)
    norm_e = pen.box(x + half + 0.1, y_norm, half, h_norm, "RMSNorm(emb)", COLORS["norm"], fontsize=8,
                     gid=gid)
    proj = pen.box(x, y_norm + 0.67, w, 0.5, f"concatenate, project $M_k$\n2D = {2 * D} → D = {D}", c,
                   fill=0.85, gid=gid)
    block_color = COLORS["MoE"] if cfg.layer_is_moe(cfg.n_layers) else COLORS["dense"]
    block = pen.box(x, proj.top + 0.25, w, ROW_BLOCKS[0] + ROW_BLOCKS[1] - proj.top - 0.25,
                    f"transformer block\n{_block_label(cfg, cfg.n_layers)}\n(layer index {cfg.n_layers}"
                    + (" + k − 1)" if Dm > 1 else ")"),
                    block_color, fill=0.85, gid=gid)
    norm = pen.box(x, ROW_NORM[0], w, ROW_NORM[1], "RMSNorm (its own)", COLORS["norm"], gid=gid)
    head = pen.box(x, ROW_HEAD[0], w, ROW_HEAD[1], "output head (shared)", io, gid=gid)
    loss_text = (r"MTP loss $L_1$: token after next" + "\n" + r"predicts $t_{i+2}$" if Dm == 1 else
                 r"MTP losses $L_k$: predict $t_{i+k+1}$" + f"\nDm = {Dm} modules")
    loss = pen.box(x, ROW_LOSS[0], w, ROW_LOSS[1], loss_text, c, fill=0.75, gid=gid)
    cx = x + w / 2
    pen.arrow((cx, ROW_TOKENS[0] + ROW_TOKENS[1]), (cx, emb.y))
    pen.arrow((norm_e.cx, emb.top), (norm_e.cx, norm_e.y))
    pen.arrow((norm_h.cx, norm_h.top), (norm_h.cx, proj.y))
    pen.arrow((norm_e.cx, norm_e.top), (norm_e.cx, proj.y))
    for lower, upper in ((proj, block), (block, norm), (norm, head), (head, loss)):
        pen.arrow((cx, lower.top), (cx, upper.y))
    # h^0: the main model's last block output (before its final norm) into RMSNorm(h)
    last, gx = main["last_block"], (main["last_block"].right + x - 0.1) / 2
    pen.path([(last.right, last.cy), (gx, last.cy), (gx, norm_h.cy), (norm_h.x, norm_h.cy)], c)
    pen.text(last.right + 0.04, last.cy + 0.04, r"$h^0$", fontsize=9, ha="left", va="bottom", color=c)
    for mine, theirs in ((emb, main["emb"]), (head, main["head"])):  # the shared modules
        pen.arrow((theirs.right, theirs.cy), (mine.x, mine.cy), COLORS["io"], ls=(0, (2, 2)), both=True)
        pen.text((theirs.right + mine.x) / 2, mine.top + 0.1, "shared", fontsize=8, color=COLORS["io"])


def _block(pen: Pen, cfg: ModelConfig, x: float, w: float) -> dict[str, Box]:
    """One pre-norm block, expanded: RMSNorm → attention → ⊕ → RMSNorm → FFN → ⊕."""
    i = _expanded_block(cfg)
    attn, moe = attention_name(cfg), cfg.layer_is_moe(i)
    pen.outline(x - 0.12, 0.3, w + 0.3, TOP - 0.3, "#444444")
    inner = w - 0.35  # the boxes; the residual lane runs at the right
    cx, lane = x + inner / 2, x + w - 0.05
    y_in = 0.75
    pen.text(cx, 0.7 - 0.03, r"$h^{l-1}$", fontsize=9, va="top")
    n1 = pen.box(x, 1.0, inner, 0.32, "RMSNorm", COLORS["norm"])
    heads = f"H = {cfg.n_heads} heads" + (f", G = {cfg.kv_heads}" if attn in ("GQA", "MQA") else "")
    name = "multi-head latent attention" if attn == "MLA" else f"{attn} attention"
    a = pen.box(x, 1.55, inner, 0.6, f"{name}\n{heads}", COLORS[attn], fill=0.78)
    add1 = 2.45
    n2 = pen.box(x, 2.8, inner, 0.32, "RMSNorm", COLORS["norm"])
    ffn_text = (f"DeepSeekMoE\nE = {cfg.n_routed_experts} routed, K = {cfg.n_activated_experts}"
                + (f", Ns = {cfg.n_shared_experts}" if cfg.n_shared_experts else "")) if moe else \
        f"dense MLP (SwiGLU)\nI = {cfg.inter_dim}"
    f = pen.box(x, 3.35, inner, 0.6, ffn_text, COLORS["MoE" if moe else "dense"], fill=0.78)
    add2 = 4.25
    pen.arrow((cx, y_in - 0.05), (cx, n1.y))
    pen.arrow((cx, n1.top), (cx, a.y))
    pen.arrow((cx, a.top), (cx, add1 - 0.12))
    pen.add(cx, add1)
    pen.arrow((cx, add1 + 0.12), (cx, n2.y))
    pen.arrow((cx, n2.top), (cx, f.y))
    pen.arrow((cx, f.top), (cx, add2 - 0.12))
    pen.add(cx, add2)
    pen.arrow((cx, add2 + 0.12), (cx, 4.75))
    pen.text(cx, 4.8, r"$h^{l}$", fontsize=9, va="bottom")
    for y0, y1 in ((0.85, add1), (add1 + 0.3, add2)):  # the residual stream
        pen.path([(cx, y0), (lane, y0), (lane, y1), (cx + 0.12, y1)])
    pen.text(lane + 0.05, 1.25, "residual", rotation=90, fontsize=8, ha="left")
    if moe and cfg.n_dense_layers:  # the blocks this picture does not show
        pen.text(x - 0.12 + (w + 0.3) / 2, 5.2, f"{_layer_range(0, cfg.n_dense_layers - 1)}: dense MLP, "
                 f"I = {cfg.inter_dim}", fontsize=8, color="#444444")
    return {"attn": a, "ffn": f}


def _mla(pen: Pen, cfg: ModelConfig, x: float, w: float, y: float, h: float) -> None:
    """MLA (DeepSeek-V2 §2.1): query latent, KV latent c^KV (Dc) and the decoupled RoPE key (Dr)."""
    c = COLORS["MLA"]
    pen.outline(x, y, w, h, c)
    H, Dc, Dr = cfg.n_heads, cfg.kv_lora_rank, cfg.qk_rope_head_dim
    Dn, Dv = cfg.qk_nope_head_dim, cfg.v_head_dim
    panel_title(pen, x, y + h, "multi-head latent attention (MLA)",
                 f"cached per token and layer: Dc + Dr = {Dc + Dr} numbers", c)
    col_w = (w - 0.24 - 2 * 0.15) / 3
    xs = [x + 0.12 + j * (col_w + 0.15) for j in range(3)]
    bus = feed(pen, x + 0.12, y + 0.16, [v + col_w / 2 for v in xs], r"$h_t$ (D = " + f"{cfg.dim})")
    r1, r2, bh = bus + 0.12, bus + 0.74, 0.5  # the two rows of boxes
    q1 = (r"query latent $c^Q_t$" + f"\nDq = {cfg.q_lora_rank}") if cfg.q_lora_rank else \
        "queries $W^Q$\nno latent: Dq = 0"
    q = pen.box(xs[0], r1, col_w, bh, q1, c, fill=0.88)
    kv = pen.box(xs[1], r1, col_w, bh, r"KV latent $c^{KV}_t$" + f"\nDc = {Dc}\ncached", c, fill=0.6,
                 gid="cached", weight="bold")
    kr = pen.box(xs[2], r1, col_w, bh, r"RoPE key $k^R_t$" + f"\nDr = {Dr}\ncached", c, fill=0.6,
                 gid="cached", weight="bold")
    q2 = pen.box(xs[0], r2, col_w, bh, f"queries, H × (Dn + Dr)\n= {H} × ({Dn} + {Dr})", c, fill=0.88,
                 fontsize=8)
    kv2 = pen.box(xs[1], r2, col_w, bh, r"per head $k^C$, $v^C$" + f"\nDn = {Dn}, Dv = {Dv}", c, fill=0.88,
                  fontsize=8)
    pen.text(xs[2] + col_w / 2, r2 + bh / 2, "one RoPE key,\nshared by all heads", fontsize=8, color=c,
             bbox={"boxstyle": "square,pad=0.1", "facecolor": tint(c, 0.95), "edgecolor": "none"})
    att = pen.box(xs[0], r2 + bh + 0.12, w - 0.24, 0.32, f"attention over H = {H} heads, key = "
                  + r"[$k^C$ ; $k^R$]", c, fill=0.78)
    for b in (q, kv, kr):
        pen.arrow((b.cx, bus), (b.cx, b.y))
    for lower, upper in ((q, q2), (kv, kv2), (q2, att), (kv2, att)):
        pen.arrow((lower.cx, lower.top), (lower.cx, upper.y))
    pen.arrow((kr.cx, kr.top), (kr.cx, att.y))


def _mha(pen: Pen, cfg: ModelConfig, x: float, w: float, y: float, h: float) -> None:
    """MHA / GQA / MQA: H query heads, G key/value heads of width Dh, K and V cached."""
    name = attention_name(cfg)
    c = COLORS[name]
    pen.outline(x, y, w, h, c)
    H, G, Dh = cfg.n_heads, cfg.kv_heads, cfg.hd
    share = {"MHA": "G = H: one K/V head per query head", "MQA": "G = 1: one K/V head for all query heads",
             "GQA": f"G = {G}: {H // G} query heads share each K/V head"}[name]
    title = {"MHA": "multi-head", "GQA": "grouped-query", "MQA": "multi-query"}[name]
    panel_title(pen, x, y + h, f"{title} attention ({name})",
                 f"caches keys and values: 2·G·Dh = {2 * G * Dh} numbers per token and layer", c)
    col_w = (w - 0.24 - 0.15) / 2
    xs = [x + 0.12, x + 0.12 + col_w + 0.15]
    bus = feed(pen, x + 0.12, y + 0.16, [v + col_w / 2 for v in xs], r"$h_t$ (D = " + f"{cfg.dim})")
    r1, r2, bh = bus + 0.12, bus + 0.74, 0.5
    q = pen.box(xs[0], r1, col_w, bh, f"queries $W^Q$\nH = {H} heads × Dh = {Dh}", c, fill=0.88)
    kv = pen.box(xs[1], r1, col_w, bh, f"keys, values $W^K$, $W^V$\nG = {G} heads × Dh = {Dh}\ncached", c,
                 fill=0.6, gid="cached", weight="bold")
    rope = pen.box(xs[0], r2, w - 0.24, bh, f"RoPE on queries and keys\n{share}", c, fill=0.88)
    att = pen.box(xs[0], r2 + bh + 0.12, w - 0.24, 0.32, f"attention over H = {H} heads", c, fill=0.78)
    for b in (q, kv):
        pen.arrow((b.cx, bus), (b.cx, b.y))
        pen.arrow((b.cx, b.top), (b.cx, rope.y))
    pen.arrow((rope.cx, rope.top), (rope.cx, att.y))


def _moe(pen: Pen, cfg: ModelConfig, x: float, w: float, y: float, h: float) -> None:
    """DeepSeekMoE: Ns shared experts plus K of E routed experts chosen by biased router scores."""
    c = COLORS["MoE"]
    pen.outline(x, y, w, h, c)
    E, K, Ns = cfg.n_routed_experts, cfg.n_activated_experts, cfg.n_shared_experts
    panel_title(pen, x, y + h, f"DeepSeekMoE: E = {E} routed" + (f" + Ns = {Ns} shared experts" if Ns else
                 " experts, no shared expert"),
                 f"each token: K = {K} of E = {E} routed experts (SwiGLU, {cfg.moe_inter_dim} wide)", c)
    groups = f"; {cfg.n_expert_groups} groups, keep {cfg.n_limited_groups}" if cfg.n_expert_groups > 1 else ""
    shared_w = 0.75 if Ns else 0.0
    rx = x + 0.12 + (shared_w + 0.15 if Ns else 0.0)  # the routed part
    rw = x + w - 0.12 - rx
    router_y = y + 0.37
    bus = feed(pen, x + 0.12, y + 0.16, [rx + rw / 2] + ([x + 0.12 + shared_w / 2] if Ns else []),
                f"$u_t$ (D = {cfg.dim})")
    router = pen.box(rx, router_y + 0.05, rw, 0.45, f"router: {cfg.score_func} scores $s_i$, top-K of "
                     f"$s_i + b_i$\nselection bias $b_i$ balances the load{groups}", c, fill=0.85, fontsize=8)
    pen.arrow((router.cx, bus), (router.cx, router.y))
    # the routed experts: K of them chosen (evenly spread, for the picture), at most 16 drawn
    shown, gap = min(E, 16), 0.04
    ew = (rw - gap * (shown - 1)) / shown
    ey, eh = router.top + 0.27, 0.4
    chosen = {round((j + 0.5) * shown / K - 0.5) for j in range(K)} if K < shown else set(range(shown))
    colors, tops = expert_colors(shown), []
    for e in range(shown):
        label = str(e) if ew >= 0.15 else ""  # two digits need about 0.14 in
        if E > shown and e == shown - 2:  # E > 16: the gap in the row
            label, color, fill, chosen = "…", "#999999", 0.95, chosen - {e}
        else:
            color, fill = (colors[e], 0.45) if e in chosen else ("#999999", 0.9)
        if E > shown and e == shown - 1 and label:
            label = str(E - 1)
        b = pen.box(rx + e * (ew + gap), ey, ew, eh, label, color, fill=fill, fontsize=8,
                    lw=1.4 if e in chosen else 0.8)
        if e in chosen:
            tops.append(b)
            pen.arrow((b.cx, router.top), (b.cx, b.y), color)
    out_x, out_y = rx + rw / 2, ey + eh + 0.38
    if Ns:
        s = pen.box(x + 0.12, router.y, shared_w, ey + eh - router.y,
                    f"shared\nexperts\nNs = {Ns}\n(every\ntoken)", COLORS["shared"], fill=0.75, fontsize=8)
        pen.arrow((s.cx, bus), (s.cx, s.y))
        pen.path([(s.cx, s.top), (s.cx, out_y), (out_x - 0.12, out_y)], COLORS["shared"])
    for b in tops:  # the gate-weighted sum
        pen.path([(b.cx, b.top), (b.cx, out_y - 0.22), (out_x, out_y - 0.22), (out_x, out_y - 0.12)],
                 "#444444", lw=0.9)
    pen.add(out_x, out_y)
    pen.text(out_x + 0.2, out_y, r"$\Sigma_i\, g_i \cdot \mathrm{FFN}_i(u_t)$ + shared", fontsize=8.5,
             ha="left")


def _dense(pen: Pen, cfg: ModelConfig, x: float, w: float, y: float, h: float) -> None:
    """The dense SwiGLU MLP: W1, W3 (D → I), SiLU(·) ⊙ (·), W2 (I → D)."""
    c = COLORS["dense"]
    pen.outline(x, y, w, h, c)
    D, I = cfg.dim, cfg.inter_dim
    panel_title(pen, x, y + h, "dense MLP (SwiGLU)", f"D = {D} → I = {I} → D = {D}; every token takes the "
                 "same path", c)
    bw = (w - 0.24 - 2 * 0.3) / 3
    labels = (f"gate $W_1$, up $W_3$\nD → I = {I}", "SiLU(gate) ⊙ up", f"down $W_2$\nI → D = {D}")
    boxes = [pen.box(x + 0.12 + j * (bw + 0.3), y + 0.95, bw, 0.55, text, c, fill=0.85)
             for j, text in enumerate(labels)]
    for a, b in zip(boxes, boxes[1:]):
        pen.arrow((a.right, a.cy), (b.x, b.cy))
    bus = feed(pen, x + 0.12, y + 0.16, [boxes[0].cx], f"$u_t$ (D = {D})")
    pen.arrow((boxes[0].cx, bus), (boxes[0].cx, boxes[0].y))


# --- the figure ---------------------------------------------------------------------------------------
def draw_architecture(cfg: ModelConfig, ax=None):
    """Draw the model ``cfg`` builds as a block diagram; returns the matplotlib Figure.

    ``ax``: an axes to draw into (its aspect is set equal and its frame hidden; give it the figure's whole
    area, ``fig.add_axes((0, 0, 1, 1))``, for the intended font sizes); by default a new figure of
    12.55 × 6.2 inches (10 × 6.2 without MTP) whose data units are inches. Raises ``TypeError``
    (``helpers.validate.InputTypeError``) for a ``cfg`` that is not a ``ModelConfig``.

    In a notebook: ``fig = draw_architecture(cfg); plt.show()``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    if not isinstance(cfg, ModelConfig):
        raise InputTypeError(f"draw_architecture needs a helpers.ModelConfig, got {type(cfg).__name__} "
                             f"({cfg!r:.60})")
    if ax is not None and not isinstance(ax, Axes):
        raise InputTypeError(f"ax must be a matplotlib Axes (or None), got {type(ax).__name__}")
    mtp = cfg.mtp_depth > 0
    col, gap = 2.15, 0.4  # width of the main model and MTP columns, space between columns
    x_main = 0.45
    x_mtp = x_main + col + gap
    x_block = (x_mtp + col + gap) if mtp else (x_main + col + gap)
    w_block = 2.15
    x_detail = x_block + w_block + 0.35
    w_detail = 4.4
    width, height = x_detail + w_detail + 0.1, 6.2
    if ax is None:
        fig = plt.figure(figsize=(width, height))
        ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    pen = Pen(ax)

    main = _main_model(pen, cfg, x_main, col)
    if mtp:
        _mtp_module(pen, cfg, x_mtp, col, main)
    block = _block(pen, cfg, x_block, w_block)
    y_attn, h_attn, y_ffn = 0.05, 2.7, 2.9
    (_mla if cfg.attn_type == "mla" else _mha)(pen, cfg, x_detail, w_detail, y_attn, h_attn)
    (_moe if cfg.layer_is_moe(_expanded_block(cfg)) else _dense)(pen, cfg, x_detail, w_detail, y_ffn,
                                                                 TOP - y_ffn)
    for b, (y0, y1) in ((block["attn"], (y_attn, y_attn + h_attn)), (block["ffn"], (y_ffn, TOP))):
        pen.ax.plot([b.right, x_detail], [b.cy, (y0 + y1) / 2], color="#999999", lw=0.9, ls=(0, (3, 3)),
                    zorder=0.5)

    # titles
    title_y = TOP + 0.25
    pen.text(x_main + col / 2, title_y, "main model", fontsize=10, weight="bold", color=COLORS["main"])
    if mtp:
        k = "k = 1" + (f" … {cfg.mtp_depth}" if cfg.mtp_depth > 1 else "")
        pen.text(x_mtp + col / 2, title_y, f"MTP module {k}, λ = {cfg.mtp_lambda:g}", fontsize=10,
                 weight="bold", color=COLORS["MTP"])
    pen.text(x_block - 0.12 + (w_block + 0.3) / 2, title_y,
             f"one block, expanded (block {_expanded_block(cfg)} ◆)",
             fontsize=10, weight="bold")
    pen.text(x_detail + w_detail / 2, title_y, "inside the block", fontsize=10, weight="bold")
    parts = [f"D = {cfg.dim}", f"L = {cfg.n_layers}", attention_name(cfg)]
    if cfg.is_moe:
        parts.append("DeepSeekMoE")
    if mtp:
        parts.append(f"MTP (Dm = {cfg.mtp_depth})")
    pen.text(width / 2, height - 0.22, "The model this configuration builds: " + ", ".join(parts),
             fontsize=12, weight="bold")
    return ax.figure
