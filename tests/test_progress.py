"""Progress on a terminal is a bar; in a log file, one plain line per step (no carriage returns)."""
from kcompress.core.progress import Lines, progress


def test_one_line_per_item_when_stderr_is_no_terminal(capsys):
    assert list(progress([0.5, 0.2, 0.0], "α schedule", "α")) == [0.5, 0.2, 0.0]
    assert capsys.readouterr().err.splitlines() == ["α schedule: α 1/3", "α schedule: α 2/3", "α schedule: α 3/3"]


def test_one_line_per_reported_step_and_none_when_disabled(capsys):
    bar = progress(iter(range(2)), "LC", "μ-step", total=2, line_per="postfix")
    assert isinstance(bar, Lines)
    for step in bar:
        bar.set_postfix(step=f"{step + 1}/2", mu="1.00e-03")
    quiet = progress(range(2), "LC", "μ-step", enabled=False)
    list(quiet)
    quiet.set_postfix(step="1/2")
    assert capsys.readouterr().err.splitlines() == ["LC: step 1/2, mu 1.00e-03", "LC: step 2/2, mu 1.00e-03"]
