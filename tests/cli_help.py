"""``compress --method METHOD --help`` as one line of text, for tests that read what the help says."""
import contextlib
import io
import re

import pytest

from kcompress.cli.main import main


def help_of(method):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["compress", "--method", method, "--help"])
    return re.sub(r"(\w-) ", r"\1", " ".join(out.getvalue().split()))  # argparse wraps after hyphens
