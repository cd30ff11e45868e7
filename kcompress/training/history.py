"""Per-epoch histories (``{metric: [value per epoch]}``) of training runs in sequence."""
import math


def merge_histories(*parts):
    """Concatenate the histories of consecutive runs (fine-tuning stages, α steps, L-steps).

    Every key of any part is kept; a run that did not log a key contributes NaN for each of its
    epochs, so that every list stays aligned with the epochs (plots draw gaps there)."""
    lengths = [len(next(iter(p.values()), [])) for p in parts]
    keys = [k for i, p in enumerate(parts) for k in p if all(k not in q for q in parts[:i])]
    return {k: [v for p, n in zip(parts, lengths) for v in p.get(k, [math.nan] * n)] for k in keys}
