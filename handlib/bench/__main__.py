"""Dispatch ``python -m handlib.bench <what> [options]`` to the benchmark modules."""
from __future__ import annotations

import importlib
import sys

COMMANDS = {"render": "handlib.bench.data", "cache": "handlib.bench.data",
            "train": "handlib.bench.train", "adversarial": "handlib.bench.adversarial"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m handlib.bench {{{'|'.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    try:
        mod = importlib.import_module(COMMANDS[argv[0]])
    except ModuleNotFoundError as e:
        print(f"benchmark '{argv[0]}' is not built yet ({e.name} missing)", file=sys.stderr)
        return 2
    return mod.main(argv) or 0


if __name__ == "__main__":
    sys.exit(main())
