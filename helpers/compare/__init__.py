"""Paired comparisons over seeds: the one way a lesson says that one arm differs from another.

Every arm runs with the *same* seeds, and an arm's function uses its seed for both the initial weights
and the data order, so seed s of arm A and seed s of arm B differ only in the mechanism. The comparison
is then the per-seed difference ``b − a`` (second arm minus first), its mean, and a Student-t interval
with n − 1 degrees of freedom. The words "better" and "worse" are written only when that interval
excludes zero; otherwise the verdict says "no detectable difference at this scale".

    runs = run_paired({"MHA": train_mha, "GQA-2": train_gqa}, seeds=range(5))
    print(runs.table())
    print(runs.difference("MHA", "GQA-2").verdict())      # GQA-2 − MHA, validation loss in nats

Why paired: two seeds of one arm can differ more than the two arms do (the init and the batch order
move the loss), but that seed-to-seed spread is shared by both arms on a seed, so it cancels in the
per-seed difference. Judge a paired gap by the spread of paired gaps, never by the spread across seeds.
``Difference.pairing`` says how much it cancelled: the per-seed correlation of the two arms and the
paired against the unpaired standard deviation.

Effects that multiply (a loss that is 2.6x on one seed and 1.1x on another) live on the log scale:
``PairedRuns.ratio(a, b)`` takes the mean of the per-seed ``ln(b / a)`` and its t interval, shown as a
factor (the geometric mean ratio, ``1.50x (1.06–2.11x)``). On the additive scale the biggest effects of
such a family carry the widest intervals, so their verdicts can come out weaker than smaller ones'.

Arms of one comparison must have the same seeds. ``PairedRuns`` refuses arms whose seeds differ; a
sweep that holds arms with more seeds than others (``Sweep.runs``) compares them on the seeds they share
and records what it left out (``PairedRuns.left_out``), and every verdict drawn from it says so.
"""

from .plots import plot_difference_curve, plot_differences, plot_paired
from .runs import PairedRuns, difference, ratio, run_paired
from .stats import Difference, Pairing, Ratio, mean_interval, t_critical

__all__ = ["Difference", "PairedRuns", "Pairing", "Ratio", "difference", "mean_interval",
           "plot_difference_curve", "plot_differences", "plot_paired", "ratio", "run_paired", "t_critical"]
