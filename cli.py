#!/usr/bin/env python
"""Thin entry point, the same as the ``kcompress`` console script: ``python cli.py --help``."""
import sys

from kcompress.cli.main import run

if __name__ == "__main__":
    sys.exit(run())
