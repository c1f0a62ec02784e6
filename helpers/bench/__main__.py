"""``python -m helpers.bench [--quick] [--json FILE] [--only SUITE ...]``"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from . import format_table, run_all, suites


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute on a CPU)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as {name: value}")
    parser.add_argument("--only", nargs="*", choices=sorted(suites()), help="run only these suites")
    args = parser.parse_args(argv)
    results = run_all(quick=args.quick, only=args.only)
    cpu = platform.processor() or platform.machine()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}")
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
