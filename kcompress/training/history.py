"""Per-epoch histories (``{metric: [value per epoch]}``) of training runs in sequence."""
import csv
import math


def merge_histories(*parts):
    """Concatenate the histories of consecutive runs (fine-tuning stages, α steps, L-steps).

    Every key of any part is kept; a run that did not log a key contributes NaN for each of its
    epochs, so that every list stays aligned with the epochs (plots draw gaps there)."""
    lengths = [len(next(iter(p.values()), [])) for p in parts]
    keys = [k for i, p in enumerate(parts) for k in p if all(k not in q for q in parts[:i])]
    return {k: [v for p, n in zip(parts, lengths) for v in p.get(k, [math.nan] * n)] for k in keys}


def write_csv(history, path):
    """``history`` as a CSV file, one row per epoch (what Keras's CSVLogger writes, for every kind of
    run: L-steps, α steps and fine-tuning stages merged); keys not logged per epoch are left out."""
    epochs = len(history.get("loss", []))
    keys = [k for k, v in history.items() if isinstance(v, list) and len(v) == epochs]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *keys])
        writer.writerows([i, *(history[k][i] for k in keys)] for i in range(epochs))
