"""``make fuzz-mesh``: a long differential fuzz run with a seed; prints what it found.

    python -m tests.meshfuzz.fuzz --seed 7 --examples 2000

Exit status 1 when any admitted object opened a forbidden path (each one is printed).
"""

from __future__ import annotations

import argparse
import sys

from tests.meshfuzz.fuzzing import DEFAULT_SEED, fuzz
from tests.meshfuzz.oracle import start_oracle


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer and print objects tried / admitted / unsafe and throughput."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--examples", type=int, default=1000, help="tenant attempts to draw")
    args = parser.parse_args(argv)
    with start_oracle() as oracle:
        run = fuzz(oracle, seed=args.seed, examples=args.examples)
    for finding in run.tally.findings:
        print(finding.describe())
    print(run.summary())
    return 1 if run.tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
