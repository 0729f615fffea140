"""``python -m handlib.data check fphab|ho3d|handsim [ROOT] [--decode] [--all]``

Prints per-split sequence and frame counts against the published ones, the problems found
grouped by kind and by sequence (counts per split, the first few sequences of each kind;
``--all`` / ``--verbose`` prints every path instead), and a verdict: which splits are
complete, how many frames load today, and how to train on what is there. Exit status:
0 no problems, 1 problems found, 2 the root is missing or is not laid out like the dataset
(one error line, no traceback).
"""
from __future__ import annotations

import argparse
import logging
import pickle
import sys

from handlib.config import ConfigError
from handlib.data.realdata import DatasetError
from handlib.data.registry import DATASETS, check_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m handlib.data")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="check a dataset on disk")
    c.add_argument("dataset", choices=DATASETS)
    c.add_argument("root", nargs="?", default=None,
                   help="dataset root (fphab, ho3d); cache root for handsim (optional)")
    c.add_argument("--decode", action="store_true", help="also decode every image (slow)")
    c.add_argument("--all", "--verbose", dest="verbose", action="store_true",
                   help="list every problem's path instead of grouping them by sequence")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # skipped sequences are listed in the report
    try:
        report = check_dataset(args.dataset, args.root, decode=args.decode)
    except (DatasetError, ConfigError, OSError, pickle.UnpicklingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(report.lines(verbose=args.verbose)))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
