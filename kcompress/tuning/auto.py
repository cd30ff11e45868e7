"""The trials of ``compress --method auto``: which methods, which settings, and how a trial is scored.

The searched space is declared by the methods themselves: each settings class lists its
searched fields (``SEARCH``), the objectives it can lower (``REDUCES``) and the methods that may
follow it (``THEN``, e.g. the pruner's physical unit removal, then LC on what is left). A trial's
values hold ``method`` — a method or a chain ``A>B`` — and, in Keras Tuner conditional scopes,
``METHOD.FIELD`` for the stages of that method, so a Bayesian oracle models each method's
settings only where they apply. Every trial is a real compression of the same reference
through :func:`kcompress.pipeline.compress_one`; a chain compresses the first stage's model
(in memory) again. The error that decides the budget is measured on the validation split, never
on the test split (learned-index keys have no held-out split: an index must hold every key, so
their error is ε over the keys), and the objective as ``compress`` measures it.
"""
import itertools
import time
from statistics import NormalDist
from pathlib import Path

import keras_tuner as kt
import numpy as np

from kcompress import pipeline
from kcompress.core.modeldir import staged_dir
from kcompress.core.objectives import predict, predicted_classes, scores
from kcompress.core.settings import base_type, split_list
from kcompress.core.stats import compression_stats
from kcompress.deploy.check import LATENCY_BATCH, OnnxRunner, TFLiteRunner, interleaved_latency_ms
from kcompress.deploy.convert import gzip_size, to_onnx
from kcompress.deploy.sizes import VARIANTS, calibration_sample, convert
from kcompress.errors import UsageError, require
from kcompress.methods import REGISTRY, settings_class
from kcompress.methods.base import Reference
from kcompress.tuning.settings import SELECTION_MIN
from kcompress.tuning.space import Param, add_param, one_type, parse_item, parse_value, trial_value
from kcompress.tuning.tuner import TrialImpossible
from kcompress.tuning.trials import MODEL_DIR, ReferenceTrial, command_args

OVER_BUDGET = 10.0  # the score of a trial over budget starts here; within budget it is objective / reference's
TOTAL_KEYS = {"bits": "bits", "gzip-tflite": "tflite_gzip_bytes", "deployed-size": "tflite_gzip_bytes",
              "params": "params"}
LATENCY_REPEATS = 100


def candidate_names(objective, methods=None):
    """The methods (and chains ``A>B``) a search tries: ``methods`` (a comma list), or every
    method with a declared space that lowers ``objective``, and every declared chain of two such."""
    singles = [m for m in REGISTRY if settings_class(m).SEARCH and objective in settings_class(m).REDUCES]
    if not methods:
        return singles + [f"{a}>{b}" for a in singles for b in settings_class(a).THEN if b in singles]
    names = split_list(methods)
    for name in names:
        stages = name.split(">")
        for stage in stages:
            require(settings_class(stage).SEARCH, f"--methods {name}: {stage} declares no search space")
        require(len(stages) == 1 or (len(stages) == 2 and stages[1] in settings_class(stages[0]).THEN),
                f"--methods {name}: not a declared chain (a chain is A>B with B in A's THEN)")
    require(len(set(names)) == len(names), f"--methods {methods!r}: repeated names")
    return names


def _param(cls, field, text):
    """A searched field from ``VALUES`` text: numbers as ``tune --space`` reads them; text fields
    (an LC task holds ``:``) as a list split on ``;`` if present, else on ``,``."""
    kinds = {f.name: base_type(f.type) for f in cls.options()}
    require(field in kinds, f"--space {cls.NAME}.{field}: --method {cls.NAME} has no setting {field}")
    if kinds[field] in (int, float):
        return parse_item(f"{field}={text}")
    items = [t.strip() for t in str(text).split(";" if ";" in str(text) else ",")]
    return Param(field, choices=tuple(parse_value(t) for t in items))


def method_spaces(names, overrides=()):
    """``{method: {field: Param}}`` of every stage in ``names``: declared, then ``--space`` items."""
    stages = list(dict.fromkeys(s for n in names for s in n.split(">")))
    spaces = {}
    for m in stages:
        cls = settings_class(m)
        spaces[m] = {f: _param(cls, f, v) if isinstance(v, str) else Param(f, choices=tuple(v))
                     for f, v in cls.SEARCH.items()}
    for item in [overrides] if isinstance(overrides, str) else overrides:
        key, sep, text = str(item).partition("=")
        method, dot, field = key.strip().rpartition(".")
        require(sep and dot and text, f"--space {item!r}: expected METHOD.FIELD=VALUES, e.g. prune.epochs=5")
        require(method in spaces, f"--space {item!r}: {method} is not searched (searched: {', '.join(spaces)})")
        spaces[method][field.replace("-", "_")] = _param(settings_class(method), field.replace("-", "_"), text)
    return spaces


def auto_hyperparameters(names, spaces):
    """Keras Tuner's ``HyperParameters``: ``method``, then each stage's fields in its conditional scope."""
    hp = kt.HyperParameters()
    hp.Choice("method", list(names))
    for method, space in spaces.items():
        with hp.conditional_scope("method", [n for n in names if method in n.split(">")]):
            for field, p in space.items():
                add_param(hp, p, f"{method}.{field}")
    return hp


def auto_grid(names, spaces):
    """Every value dict of a grid search: per method, the product of its stages' candidates."""
    grid = []
    for name in names:
        axes = [(f"{m}.{f}", one_type(p.grid_values())) for m in name.split(">") for f, p in spaces[m].items()]
        for combo in itertools.product(*(values for _, values in axes)):
            grid.append({"method": name, **{key: v for (key, _), v in zip(axes, combo)}})
    return grid


def stage_settings(values, spaces):
    """The settings of each stage of a trial's ``values`` (exit 2 if unusable)."""
    return [settings_class(m).from_dict({f: trial_value(values[f"{m}.{f}"]) for f in spaces[m]
                                         if f"{m}.{f}" in values})
            for m in values["method"].split(">")]


def test_halves(data, seed=0):
    """Indices ``(selection, held_out)`` of the test split, halved at random (``seed``)."""
    order = np.random.default_rng(seed).permutation(len(data.x_test))
    return np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])


def selection_split(data, how="auto", seed=0):
    """``(x, y, name)`` on which trials are judged. ``validation``: the reference's validation split
    (learned-index keys: the keys, since an index must hold every key); ``test-half``: half the test
    split, the other half kept unseen for the chosen model's final check; ``auto``: a classifier's
    validation split when it holds at least :data:`SELECTION_MIN` examples, else ``test-half``.
    Every trial and the reference are judged on the same examples (a paired comparison)."""
    keys = "n_keys" in data.info
    if how == "test-half" or (how == "auto" and not keys and data.task == "classification"
                              and (not data.has_val or len(data.x_val) < SELECTION_MIN)):
        require(not keys, "--selection test-half: a learned index has no test split (trials are judged on its keys)")
        chosen, _ = test_halves(data, seed)
        return data.x_test[chosen], data.y_test[chosen], f"half the test split ({len(chosen)} examples)"
    if data.has_val:
        return data.x_val, data.y_val, f"the validation split ({len(data.x_val)} examples)"
    require(keys, "--method auto judges trials on a validation split and the reference's data has "
                  "none: train the reference with --val-split > 0, or use --selection test-half")
    return data.x_train, data.y_train, f"the keys ({len(data.x_train)})"


def _between(p, a, b):
    """The value halfway between ``a`` and ``b`` of the searched :class:`Param` ``p`` (a choice: the middle
    of their positions in ``p.choices``, rounded towards ``a``)."""
    if p.is_range:
        mid = (float(a) + float(b)) / 2
        return int(round(mid)) if p.integer else mid
    i, j = p.choices.index(a), p.choices.index(b)
    return p.choices[i + int((j - i) / 2)]  # towards a: next to a, nothing lies between


class AutoTrial(ReferenceTrial):
    """One trial of the auto search: compress the reference with the trial's method (or chain)
    and settings, measure the objective and the validation error, and score them."""

    kind = "compress"
    budget, resumable = None, False

    def __init__(self, from_dir, settings, seed=0, source=None):
        self.settings, self.seed = settings, seed
        self.reference = pipeline.load_reference(from_dir, **(source or {}))
        self.names = candidate_names(settings.objective, settings.methods)
        require(self.names, f"--objective {settings.objective}: no method declares a search space that lowers it")
        self.spaces = method_spaces(self.names, settings.space)
        *self.split, self.split_name = selection_split(self.data, settings.selection, seed)
        self.held_out = test_halves(self.data, seed)[1] if self.split_name.startswith("half the test") else None
        self.searchable = ("method",) + tuple(f"{m}.{f}" for m, s in self.spaces.items() for f in s)
        self.reference_wrong, self.z = None, NormalDist().inv_cdf(settings.confidence)
        self.reference_error = self.error(self.reference.model)
        self.error_budget = (settings.max_error if settings.max_error is not None
                             else self.reference_error + settings.max_error_increase)
        stats = compression_stats(self.reference.model, self.reference.model)["total"]
        self.reference_bits = stats["reference_bits"]
        self._onnx = None
        self.reference_objective = self.measure(self.reference.model, {**stats, **self.reference.tflite_size()},
                                                reference=True)[0]

    def params(self):
        """``{name: Param}`` of the searched values, for the report's columns."""
        space = {"method": Param("method", choices=tuple(self.names))}
        space.update({f"{m}.{f}": p for m, s in self.spaces.items() for f, p in s.items()})
        return space

    def first_trials(self):
        """The known-good recipes (``RECIPE`` of each stage's settings) the search tries first, highest
        ``RECIPE_GAIN`` first (a chain's: the product of its stages'), at most half the trials so that the
        oracle's own search keeps the other half. A value ``--space`` moved out of reach is replaced by the
        given space's first."""
        def gain(name):
            return float(np.prod([settings_class(m).RECIPE_GAIN for m in name.split(">")]))

        ranked = sorted(self.names, key=gain, reverse=True)
        return [self.recipe(name) for name in ranked[: max(1, self.settings.trials // 2)]]

    def recipe(self, name):
        """The values of ``name``'s recipe trial."""
        values = {"method": name}
        for m in name.split(">"):
            known = settings_class(m).RECIPE
            for f, p in self.spaces[m].items():
                v = known.get(f)
                fits = v is not None and ((p.low <= v <= p.high) if p.is_range else v in p.choices)
                values[f"{m}.{f}"] = v if fits else (p.low if p.is_range else p.choices[0])
        return values

    def refined_trial(self, done):
        """The next trial after the recipes, around the best trial within the budget: halfway between it and,
        of the same method or chain, the trial over the budget with the smallest overshoot among those that
        compressed more (a bisection between a setting known to hold the budget and one known to break it; a
        choice moves to the middle of the two in its declared order); with nothing between them, its first
        untried neighbour (:meth:`neighbours`). None when the oracle should propose."""
        scored = [(v, m) for v, m in done if m.get("ratio") is not None]
        within = [(v, m) for v, m in scored if m.get("within_budget")]
        if not within:
            return None
        best, best_m = max(within, key=lambda vm: vm[1]["ratio"])
        keys = [f"{m}.{f}" for m in best["method"].split(">") for f in self.spaces[m]]
        tried = [{k: v.get(k) for k in ["method", *keys]} for v, _ in done]
        over = [(v, m) for v, m in scored if not m.get("within_budget") and v["method"] == best["method"]
                and m["ratio"] > best_m["ratio"]]
        if over:
            far = min(over, key=lambda vm: vm[1]["val_error"])[0]
            middle = {"method": best["method"], **{k: _between(self._param(k), best[k], far[k]) for k in keys}}
            if middle not in tried:
                return middle
        return next((n for n in self.neighbours(best, keys) if n not in tried), None)

    def neighbours(self, values, keys):
        """``values`` with one searched field moved one step: to the previous, then the next choice in its
        declared order, or a tenth of its range up, then down (the declared spaces run from the most
        compressive choice, and a range's high end compresses most, so the bolder step comes first)."""
        for key in keys:
            p, v = self._param(key), values[key]
            if p.is_range:
                step = (p.high - p.low) / 10
                moved = [min(p.high, v + step), max(p.low, v - step)]
                moved = [int(round(m)) for m in moved] if p.integer else moved
            else:
                i = p.choices.index(v)
                moved = [p.choices[j] for j in (i - 1, i + 1) if 0 <= j < len(p.choices)]
            for m in moved:
                if m != v:
                    yield {"method": values["method"], **{k: values[k] for k in keys}, key: m}

    def _param(self, key):
        method, field = key.split(".", 1)
        return self.spaces[method][field]

    def check(self):
        """Exit 2 now for a declared or given candidate that cannot run (every low, high and choice)."""
        for name in self.names:
            stages = name.split(">")
            first = {f"{m}.{f}": (p.low if p.is_range else p.choices[0]) for m in stages
                     for f, p in self.spaces[m].items()}
            for key in first:
                p = self.spaces[key.split(".")[0]][key.split(".", 1)[1]]
                for value in ((p.low, p.high) if p.is_range else p.choices):
                    stage_settings({**first, key: value, "method": name}, self.spaces)

    def error(self, model, predictions=None):
        """The error the budget judges, on :func:`selection_split`: ε in positions for an index; for classes
        the error % plus ``--confidence``'s one-sided normal quantile times the standard error of its paired
        difference from the reference on the same examples (each example −1, 0 or +1), so that a model the
        budget admits is within it with that confidence, not only on these examples: on 5,000 images the
        most compressive of many trials read +0.86 pp on them and +1.52 pp on the other 5,000
        (bench/results/auto_deployed_size.md). ``predictions``: the model's outputs there, when they come
        from an exported file's runtime."""
        x, y = self.split
        out = predict(model, x) if predictions is None else predictions
        s = scores(y, out, self.data, "sel_")
        if self.task != "classification":
            return s["sel_max_error"]
        wrong = (predicted_classes(out, self.data) != y).astype(float)
        if self.reference_wrong is None:  # the reference itself: the comparisons are made against it
            self.reference_wrong = wrong
        d = wrong - self.reference_wrong
        return s["sel_error"] + self.z * 100 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else s["sel_error"]

    def measure(self, model, total, reference=False):
        """``(objective, error, file)`` of ``model``; ``total``: its compression statistics' totals. The
        error is the Keras model's, or for ``deployed-size`` that of ``file`` (the variant chosen) as its
        runtime computes it.
        ``deployed-size`` counts against the reference's float32 TFLite file, the file one ships without
        compressing (``reference``)."""
        objective = self.settings.objective
        if objective == "deployed-size" and not reference:
            variant, value, error = self.smallest_file(model)
            return value, error, variant
        value = self.latency_ms(model) if objective == "latency" else float(total[TOTAL_KEYS[objective]])
        return value, None if reference else self.error(model), None

    def files(self, model):
        """``[(variant, gzip bytes, error)]`` of every deployable file of ``model`` (:mod:`kcompress.deploy.sizes`),
        each run in its own runtime on the selection split; a variant the converter refuses is skipped."""
        sample, x = calibration_sample(self.data.x_train, self.seed), self.split[0]
        rows = []
        for variant in VARIANTS:
            try:
                blob = convert(model, variant, sample)
            except Exception:  # noqa: BLE001 - a format this model cannot take is no file to choose
                continue
            runner = OnnxRunner(blob) if variant == "onnx" else TFLiteRunner(blob)
            rows.append((variant, float(gzip_size(blob)), self.error(model, runner(x))))
        return rows

    def smallest_file(self, model):
        """``(variant, gzip bytes, error)`` of the smallest file within the budget (none within it: the file
        with the least error, so that the oracle sees how far over the budget the model is)."""
        rows = self.files(model)
        within = [r for r in rows if self.within(r[2])]
        return min(within, key=lambda r: r[1]) if within else min(rows, key=lambda r: (r[2], r[1]))

    def latency_ms(self, model):
        """Milliseconds of ``model``'s ONNX file at batch 256 on one thread in onnxruntime, timed
        interleaved with the reference's file and scaled to the reference's first timing, so that
        the load of a shared machine at the moment of a trial cancels out of the comparison. The
        fastest of the calls counts, not the median: on 2 shared cores a 2 ms call is preempted
        far more often than a 0.5 ms one, and medians made a pruned LeNet-300-100 (keep 0.24)
        13.9x faster in a search where, timed alone a minute later, it was 3-4x faster."""
        x = self.data.x_train[:LATENCY_BATCH]  # inputs only: timing needs no labels
        if self._onnx is None:
            runner = OnnxRunner(to_onnx(self.reference.model))
            self._onnx = (runner, interleaved_latency_ms([runner], x, LATENCY_REPEATS, np.min)[0])
        ref_runner, ref_ms = self._onnx
        mine, ref_now = interleaved_latency_ms([OnnxRunner(to_onnx(model)), ref_runner], x, LATENCY_REPEATS, np.min)
        return ref_ms * mine / ref_now

    def within(self, error):
        """Whether ``error`` is within the budget; exactly at it counts (100·(1 − 0.94) is
        6.000000000000005 in floating point, above a budget of 5 + 1 computed the same way)."""
        return error <= self.error_budget + 1e-9 * max(1.0, abs(self.error_budget))

    def score(self, value, error):
        """``value`` / the reference's within the error budget; over it ``OVER_BUDGET`` + the
        overshoot, so that no trial over budget outranks one within it (no method makes a model ten
        times larger or slower), while the oracle still sees how far over it was."""
        return value / self.reference_objective if self.within(error) else OVER_BUDGET + error - self.error_budget

    def run(self, values, folder):
        """Compress the reference through the trial's stages into ``folder/model``; its metrics."""
        folder, start = Path(folder), time.perf_counter()
        ref, stages = self.reference, stage_settings(values, self.spaces)
        for i, settings in enumerate(stages, 1):
            target = folder / (MODEL_DIR if i == len(stages) else f"stage{i}-{settings.NAME}")
            with staged_dir(target, overwrite=True) as tmp:
                try:
                    record, model = pipeline.compress_one(ref, settings, tmp, self.seed, label=f"{folder.name}")
                except UsageError as e:
                    # The search's own space: a combination that cannot run (a chain's later stage
                    # with nothing left to do, e.g. clustering into 4 values what LC left at 2) is a
                    # failed trial, not the end of the search.
                    raise TrialImpossible(f"{settings.NAME}: {e}") from None
            ref = Reference(model=model, run=record, data=ref.data, train=ref.train, folder=target,
                            data_spec=ref.data_spec)
        total = record.total_compression
        value, error, variant = self.measure(model, total)
        metrics = {"auto_score": self.score(value, error), "val_error": error, "objective": value,
                   "ratio": self.reference_objective / value, "within_budget": float(self.within(error)),
                   "bits_ratio": self.reference_bits / total["bits"], "params": float(total["params"])}
        if variant:  # Keras Tuner keeps numbers: the file's index in VARIANTS
            metrics["file"] = float(VARIANTS.index(variant))
        return {**metrics, "seconds": time.perf_counter() - start}

    def progress(self, oracle, trial_id, metrics):
        """One line: this trial, the best within budget so far, and what is left of the budget."""
        best = [t for t in oracle.get_best_trials(1) if t.score is not None and t.score < OVER_BUDGET]
        best_score, best_id = (best[0].score, best[0].trial_id) if best else (None, None)
        if metrics["auto_score"] < OVER_BUDGET and (best_score is None or metrics["auto_score"] < best_score):
            best_score, best_id = metrics["auto_score"], trial_id
        shown = f"{1 / best_score:.3g}x (trial {best_id})" if best_score else "none within budget yet"
        left = []  # known to the chief's oracle only: a worker shows no budget
        if hasattr(oracle, "trials") and oracle.max_trials and not oracle.time_budget:
            left.append(f"{oracle.max_trials - len(oracle.trials)} trials")
        if getattr(oracle, "time_budget", None):
            spent = oracle.spent_seconds() + metrics["seconds"]
            left.append(f"{max(0.0, oracle.time_budget - spent) / 60:.1f} min")
        return (f"auto: trial {trial_id} {self.settings.objective} {metrics['ratio']:.3g}x at {metrics['val_error']:.4g} "
                f"(budget {self.error_budget:.4g}) · best so far {shown} · left: {', '.join(left) or '-'}")

    def config(self, values):
        """The trial's settings: one ``compress --config`` mapping per stage (a list for a chain)."""
        confs = [{"method": s.NAME, **{k: v for k, v in s.to_dict().items() if v is not None}}
                 for s in stage_settings(values, self.spaces)]
        return confs[0] if len(confs) == 1 else confs

    def command(self, values, out):
        """Ready ``compress`` commands that redo the trial (one per stage, each from the last)."""
        commands, source = [], self.reference.from_args()
        stages = stage_settings(values, self.spaces)
        for i, s in enumerate(stages, 1):
            target = str(out) if i == len(stages) else f"{out}-stage{i}"
            commands.append(["kcompress", "compress", *source, "--method", s.NAME]
                            + command_args(s.to_dict(), s.defaults()) + ["--seed", str(self.seed), "--out", target])
            source = ["--from", target]
        return commands[0] if len(commands) == 1 else commands
