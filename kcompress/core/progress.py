"""Progress of long loops: a tqdm bar on a terminal, one plain line per step in a log file (a bar's
carriage-return updates pile up there as one unreadable line)."""
import sys

from tqdm import tqdm


def progress(iterable, desc, unit, total=None, enabled=True, line_per="item"):
    """``iterable`` with progress shown on stderr: a bar if stderr is a terminal; else one line per
    item (``line_per="item"``) or per :meth:`~Lines.set_postfix` call (``"postfix"``: the loop reports
    each step's figures itself)."""
    if enabled and sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit)
    return Lines(iterable, desc, unit, total, enabled, line_per)


class Lines:
    """The plain-line stand-in for a tqdm bar (the same ``set_postfix``)."""

    def __init__(self, iterable, desc, unit, total, enabled, line_per):
        self.iterable, self.desc, self.unit, self.enabled, self.line_per = iterable, desc, unit, enabled, line_per
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)

    def __iter__(self):
        for n, item in enumerate(self.iterable, 1):
            if self.line_per == "item":
                self._print(f"{self.unit} {n}/{self.total}")
            yield item

    def set_postfix(self, **values):
        if self.line_per == "postfix":
            self._print(", ".join(f"{k} {v}" for k, v in values.items()))

    def _print(self, text):
        if self.enabled:
            print(f"{self.desc}: {text}", file=sys.stderr, flush=True)
