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


def test_tensorboard_scalars_continue_across_the_stages_of_a_command(reference_dir, tmp_path):
    """prune+cluster trains twice (the pruning stage, then the clustering stage): its two epochs are
    steps 0 and 1 of one log, which TensorFlow's own event reader reads back."""
    from kcompress.backend import tf
    from kcompress.cli.main import main

    logs = tmp_path / "tb"
    assert main(["compress", "--from", str(reference_dir), "--method", "prune+cluster", "--sparsity", "0.5",
                 "--epochs", "1", "--clusters", "8", "--cluster-epochs", "1", "--batch-size", "1000",
                 "--out", str(tmp_path / "pc"),
                 "--tensorboard", str(logs)]) == 0
    steps = {}
    for path in logs.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    assert steps["loss"] == [0, 1] and steps["val_loss"] == [0, 1], steps
