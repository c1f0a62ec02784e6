"""pytest settings for running the lessons under nbval (``pytest --nbval-lax notebooks``).

nbval waits a hard-coded 5 s for each output message once a cell's execution reply has arrived
(``IPyNbCell.output_timeout``; no command-line option sets it: nbval issues #136 and #231). On a
loaded 2-core CI machine the kernel can take longer than that to flush the last messages of a long
cell (notebook 00's training cell, with its progress-bar widget), and the cell then fails although
it ran. This raises the wait for the messages only: a cell that runs too long is still stopped by
``--nbval-cell-timeout``, and outputs are compared as before.

The cells marked ``NBVAL_CHECK_OUTPUT`` are compared after ``nbval_sanitize.cfg`` (beside this file)
replaces the float differences that no two torch builds share (see that file); a
``--nbval-sanitize-with`` on the command line takes precedence.
"""

from pathlib import Path

OUTPUT_WAIT_S = 60
SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")


def pytest_collection_modifyitems(config, items):
    if getattr(config.option, "nbval_sanitize_with", "unset") is None:  # nbval loaded, no file given
        config.option.nbval_sanitize_with = str(SANITIZE)
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = max(item.output_timeout, OUTPUT_WAIT_S)
