"""Thin launcher so `python report.py outputs/multiruns/<time>` works from the repository root."""

import sys

from dlexp.report import main

if __name__ == "__main__":
    sys.exit(main())
