"""Runs the harness CLI: ``python -m tests.e2e.harness up|status|down|tools``."""

from __future__ import annotations

import sys

from tests.e2e.harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
