"""``helpers.timing``: what is called, in which order, on how many threads, and which statistic is which.
No timing thresholds: how fast anything runs is the benchmark's business, not a test's."""

import itertools
import math
import re
from pathlib import Path

import pytest
import torch
from torch.utils.benchmark import Measurement

from helpers import preset, timing
from helpers.model import Transformer
from helpers.timing import Timing, interleaved, interleaved_best, stopwatch, time_call, torch_threads

QUICK = 0.01  # seconds per measurement: enough to exercise Timer, cheap on a shared CPU


@pytest.fixture
def two_threads():
    """Run the test on two torch threads, so a change to one thread (and its undoing) is visible."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_time_call_calls_fn_and_returns_sane_fields():
    calls = []
    t = time_call(lambda: calls.append(1), min_run_time=QUICK, label="append")
    assert isinstance(t, Timing) and isinstance(t.measurement, Measurement)
    assert t.n == len(t.measurement.times) >= 1
    assert len(calls) >= t.n  # warm-up calls plus at least one per measurement
    assert 0 < t.min <= t.median and t.iqr >= 0 and math.isfinite(t.median)
    assert t.min == min(t.measurement.times) and t.median == t.measurement.median


def test_timing_names_its_statistics():
    t = time_call(lambda: None, min_run_time=QUICK)
    assert {"median", "min", "iqr", "n", "measurement"} <= set(Timing.__dataclass_fields__)
    text = str(t)
    assert "median" in text and "min" in text and f"{t.n} measurements" in text


def test_interleaved_best_reports_the_minimum(monkeypatch):
    fake = {"a": Timing(median=2.0, min=1.0, iqr=0.5, n=3, measurement=None)}
    monkeypatch.setattr(timing, "interleaved", lambda fns, rounds=3: fake)
    assert interleaved_best({"a": lambda: None}) == {"a": 1.0}


def test_time_call_honours_threads_and_restores_them(two_threads):
    seen = []
    time_call(lambda: seen.append(torch.get_num_threads()), min_run_time=QUICK, threads=1)
    assert set(seen) == {1} and torch.get_num_threads() == two_threads
    seen.clear()
    time_call(lambda: seen.append(torch.get_num_threads()), min_run_time=QUICK)  # threads=None: as now
    assert set(seen) == {two_threads}


def test_threads_are_restored_when_fn_raises(two_threads):
    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        time_call(boom, threads=1)
    assert torch.get_num_threads() == two_threads
    with pytest.raises(RuntimeError, match="boom"):
        interleaved({"x": boom}, threads=1)
    assert torch.get_num_threads() == two_threads
    with pytest.raises(RuntimeError, match="boom"), torch_threads(1):
        assert torch.get_num_threads() == 1
        boom()
    assert torch.get_num_threads() == two_threads


@pytest.mark.parametrize("number", [None, 3])
def test_interleaved_alternates_the_arms(number):
    order = []
    fns = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    out = interleaved(fns, rounds=3, number=number, min_run_time=QUICK)
    turns = [name for name, _ in itertools.groupby(order)]  # each turn is a run of calls to one arm
    assert turns == ["a", "b", "c"] * 3
    assert set(out) == {"a", "b", "c"}
    if number:
        assert all(t.n == 3 for t in out.values())  # one measurement per round
    assert all(0 < t.min <= t.median for t in out.values())


def test_interleaved_keys_need_not_be_strings():
    out = interleaved({8: lambda: None, 1: lambda: None}, rounds=1, min_run_time=0)
    assert list(out) == [8, 1]


def test_cpu_time_needs_one_thread():
    with pytest.raises(ValueError, match="threads=1"):
        time_call(lambda: None, cpu_time=True)
    t = time_call(lambda: sum(range(1000)), min_run_time=QUICK, cpu_time=True, threads=1)
    assert t.min > 0


def test_stopwatch_reads_once_and_also_when_the_body_raises():
    with stopwatch() as clock:
        assert math.isnan(clock.seconds)  # read when the block ends
        sum(range(1000))
    assert clock.seconds >= 0
    with pytest.raises(KeyError), stopwatch() as failed:
        raise KeyError("x")
    assert failed.seconds >= 0


def test_decode_ms_per_token_keeps_its_signature():
    torch.manual_seed(0)
    model = Transformer(preset("test")).eval()
    prompt = torch.zeros(1, 4, dtype=torch.long)
    assert 0 < timing.decode_ms_per_token(model, prompt, 3, repeats=1) < math.inf


def test_no_hand_written_timing_outside_the_timing_module():
    """Speed is measured through ``helpers.timing`` only; the one other clock reading allowed is the
    training loop's throughput (``training.py``). (The live figures' redraw throttles read
    ``time.monotonic``, which measures nothing.) The benchmarks set their thread count through it too."""
    root = Path(timing.__file__).parent
    clock = re.compile(r"perf_counter|time\.time\(|thread_time|process_time")
    threads = re.compile(r"set_num_threads")
    offenders = [f"{p.relative_to(root)}:{i}" for p in sorted(root.rglob("*.py"))
                 if p.name not in {"timing.py", "training.py"}
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if clock.search(line) or (p.parent.name == "bench" and threads.search(line))]
    assert offenders == []


def test_stopwatch_can_read_cpu_time():
    """cpu_time=True reads the thread's CPU time: a sleep costs (almost) none of it, busy work does."""
    import time

    with stopwatch(cpu_time=True) as idle:
        time.sleep(0.05)
    with stopwatch(cpu_time=True) as busy:
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
    assert idle.seconds < 0.02 <= busy.seconds


class FakeAccelerators:
    """Records which devices were synchronised (no GPU needed)."""

    def __init__(self, monkeypatch, n_cuda: int = 2, mps: bool = True):
        self.calls = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n_cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n_cuda)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: self.calls.append(("cuda", str(d))))
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(torch.mps, "synchronize", lambda: self.calls.append(("mps", None)))


def test_synchronize_waits_for_the_device_it_is_given(monkeypatch):
    from helpers.timing import synchronize

    fake = FakeAccelerators(monkeypatch)
    synchronize("cuda:1")  # the second GPU, not the current one
    synchronize(torch.device("mps"))
    synchronize("cpu")  # nothing to wait for
    assert fake.calls == [("cuda", "cuda:1"), ("mps", None)]
    fake.calls.clear()
    synchronize()  # by default: every accelerator in sight
    assert fake.calls == [("cuda", "0"), ("cuda", "1"), ("mps", None)]


def test_timings_read_a_clock_that_synchronises_every_accelerator(monkeypatch):
    fake = FakeAccelerators(monkeypatch, n_cuda=1, mps=True)
    time_call(lambda: None, min_run_time=0.0)
    assert ("cuda", "0") in fake.calls and ("mps", None) in fake.calls
    with stopwatch():
        fake.calls.clear()
    assert fake.calls  # the stopwatch's closing reading synchronised too


def test_the_roofs_and_the_decode_step_are_measured_here_and_keep_their_old_names():
    """Lesson 03's roofline and the roofline benchmark measure through the same functions (#27: a lesson
    never imports a benchmark); the benchmark's old names are these objects."""
    from helpers.bench import roofline as bench_rl
    from helpers.decode_cost import layer_step_cost
    from helpers.lessons import roofline as lesson_rl

    for name in ("stream_bandwidth", "peak_flops", "decode_step"):
        assert getattr(bench_rl, name) is getattr(timing, name) is getattr(lesson_rl, name)
    assert bench_rl.make_layer is timing.decode_layer and bench_rl.step_cost is layer_step_cost
    assert bench_rl.PATHS is timing.DECODE_PATHS and bench_rl.MLA_CONFIG is timing.DECODE_MLA_CONFIG
    step, cost = timing.decode_step("gqa", batch=2, context=8)
    assert step().shape == (2, 1, timing.DECODE_GQA_CONFIG.dim)
    assert cost.cache_bytes == 2 * 9 * 2 * timing.DECODE_GQA_CONFIG.kv_heads * timing.DECODE_GQA_CONFIG.hd * 4
