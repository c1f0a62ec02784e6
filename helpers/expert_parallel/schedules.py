"""Schedules computed in time units, not timed: two streams overlapping communication with compute
(DeepSeek-V3 §3.2.1's computation-communication overlap), the 1F1B pipeline and its bubble, and
DualPipe's bubble by the report's Table 2 formula."""

from __future__ import annotations

from dataclasses import dataclass

from ..validate import check_int


# --- schedules (computed in time units, not timed) ----------------------------------------------------
@dataclass
class Slot:
    chain: str  # which micro-batch chunk
    op: str  # e.g. "attn", "dispatch"
    stream: str  # "compute" or "comm"
    start: float
    end: float


def two_stream_schedule(chains: dict[str, list[tuple[str, str, float]]], *, overlap: bool) -> list[Slot]:
    """Greedy list schedule of chains of ops ``(op, stream, duration)``, each chain in order.

    With ``overlap`` the "compute" and "comm" streams run at once (DualPipe's idea: one chunk's
    all-to-all runs while another chunk computes); without, everything shares one stream."""
    where = "two_stream_schedule"
    if not isinstance(chains, dict) or not chains:
        raise ValueError(f"{where}: chains must be a non-empty dict name → [(op, stream, duration), ...]")
    for name, ops in chains.items():
        for op in ops:
            if len(op) != 3 or op[1] not in ("compute", "comm") or not op[2] >= 0:
                raise ValueError(f"{where}: chain {name!r} has {op!r}; each op is (name, 'compute' | "
                                 "'comm', duration >= 0)")
    pos = {c: 0 for c in chains}
    chain_free = {c: 0.0 for c in chains}
    stream_free: dict[str, float] = {}
    slots = []
    while any(pos[c] < len(ops) for c, ops in chains.items()):
        best = None
        for c, ops in chains.items():
            if pos[c] < len(ops):
                op, stream, dur = ops[pos[c]]
                key = stream if overlap else "device"
                start = max(chain_free[c], stream_free.get(key, 0.0))
                if best is None or start < best[0]:
                    best = (start, c, op, stream, dur, key)
        start, c, op, stream, dur, key = best
        slots.append(Slot(c, op, stream, start, start + dur))
        chain_free[c] = stream_free[key] = start + dur
        pos[c] += 1
    return slots


def makespan(slots: list[Slot]) -> float:
    return max(s.end for s in slots)


def one_f_one_b(stages: int, micro: int, f: int = 1, b: int = 2) -> list[list[tuple[str, int, int]]]:
    """The 1F1B pipeline schedule: per stage, its ops ``(kind "F"|"B", micro-batch, start)``, each F taking
    ``f`` and each B ``b`` time units; stage s warms up with ``stages − s − 1`` forwards, then alternates."""
    where = "one_f_one_b"
    stages = check_int("stages", stages, min_value=1, where=where)
    micro = check_int("micro", micro, min_value=stages, where=where)
    f = check_int("f", f, min_value=1, where=where)
    b = check_int("b", b, min_value=1, where=where)
    order = []
    for s in range(stages):
        warm = stages - s - 1
        seq = [("F", m) for m in range(warm)]
        for m in range(micro - warm):
            seq += [("F", warm + m), ("B", m)]
        seq += [("B", m) for m in range(micro - warm, micro)]
        order.append(seq)
    done: dict[tuple[str, int, int], int] = {}
    pos, free = [0] * stages, [0] * stages
    out: list[list[tuple[str, int, int]]] = [[] for _ in range(stages)]
    while any(pos[s] < len(order[s]) for s in range(stages)):
        progressed = False
        for s in range(stages):
            if pos[s] == len(order[s]):
                continue
            kind, m = order[s][pos[s]]
            dep = ("F", s - 1, m) if kind == "F" else ("B", s + 1, m)
            if (kind == "F" and s == 0) or (kind == "B" and s == stages - 1 and ("F", s, m) in done):
                ready = done.get(("F", s, m), 0) if kind == "B" else 0
            elif dep in done:
                ready = done[dep]
            else:
                continue
            start = max(ready, free[s])
            free[s] = done[(kind, s, m)] = start + (f if kind == "F" else b)
            out[s].append((kind, m, start))
            pos[s] += 1
            progressed = True
        if not progressed:
            raise RuntimeError("one_f_one_b: the schedule deadlocked")  # cannot happen for micro >= stages
    return out


def pipeline_bubble(schedule: list[list[tuple[str, int, int]]], f: int = 1, b: int = 2) -> int:
    """Idle time units of one stage: the makespan minus its own work (the same on every stage in 1F1B)."""
    end = max(start + (f if kind == "F" else b) for ops in schedule for kind, _, start in ops)
    work = sum(f if kind == "F" else b for kind, _, _ in schedule[0])
    return end - work


def dualpipe_bubble(stages: int, f: float, b: float, w: float, fb: float) -> float:
    """DeepSeek-V3 Table 2: DualPipe's bubble ``(PP/2 − 1)(F&B + B − 3W)`` (formula from the paper;
    the bidirectional schedule itself is not simulated here)."""
    stages = check_int("stages", stages, min_value=2, where="dualpipe_bubble")
    if stages % 2:
        raise ValueError(f"dualpipe_bubble: DualPipe needs an even number of stages, got stages={stages}")
    return (stages / 2 - 1) * (fb + b - 3 * w)
