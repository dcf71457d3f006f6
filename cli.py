#!/usr/bin/env python3
"""Run pinfeatures from a checkout without installing the console script: `python cli.py build ...`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pinfeatures.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
