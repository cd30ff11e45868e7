"""``python -m kcompress``: the ``kcompress`` console script."""
import sys

from kcompress.cli.main import run

if __name__ == "__main__":
    sys.exit(run())
