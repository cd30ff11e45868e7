"""``compress --method auto``: search methods × settings, then choose, re-test, export and check.

    kcompress compress --from models/ref --method auto --objective bits --max-error-increase 0.5 \\
        --max-trials 30 | --time-budget 2h  [--methods prune+cluster,lc] [--space lc.mu_steps=20] --out DIR

The search is a ``tune`` search (:func:`kcompress.tuning.search.run_search`: resumable after a
kill by running the same command again, ``--chief``/``--worker`` as for ``tune``) whose trials
are :class:`~kcompress.tuning.auto.AutoTrial`. ``DIR`` then holds the trials and ``trials.md``,
the Pareto front (:mod:`kcompress.tuning.pareto`), ``best/`` (the chosen model directory: the
smallest objective within the error budget), ``exported/`` (its TFLite and ONNX files with the
deployment check) and ``summary.md`` / ``summary.json``, which state all of it.
"""
import json
import shutil
from pathlib import Path

from kcompress.core.modeldir import check_apart, write_json
import numpy as np

from kcompress.core.objectives import evaluate_model, predict, predicted_classes, primary_metric
from kcompress.core.source import Source
from kcompress.deploy.check import export_and_check
from kcompress.deploy.settings import ExportSettings
from kcompress.deploy.sizes import VARIANTS
from kcompress.errors import CheckFailed
from kcompress.pipeline import load_reference
from kcompress.tuning.auto import AutoTrial, auto_grid, auto_hyperparameters
from kcompress.tuning.pareto import write_pareto
from kcompress.tuning.report import BEST_DIR, write_report
from kcompress.tuning.search import run_search
from kcompress.tuning.settings import AutoSettings
from kcompress.tuning.tuner import trial_rows

PER_RUN = ("chief", "worker", "tuner_id")  # how this process takes part, not what is searched


def compress_auto(from_dir, out, overwrite=False, seed=0, **settings):
    """Run (or resume) the auto search into ``out``; returns the summary (``None`` on a worker)."""
    check_apart(Path(out), Path(from_dir))
    source = {k: settings.pop(k) for k in Source.names() if k in settings}
    s = AutoSettings.from_dict(settings)
    runner = AutoTrial(from_dir, s, seed, source)
    runner.check()
    hp = auto_hyperparameters(runner.names, runner.spaces)
    grid = auto_grid(runner.names, runner.spaces) if s.search == "grid" else None
    recorded = {"method": "auto", "from_dir": str(from_dir), "seed": seed, "spaces": runner.params(), **source,
                **{k: v for k, v in s.to_dict().items() if k not in PER_RUN}}
    print(f"auto search over {', '.join(runner.names)}: reference {s.objective} {runner.reference_objective:.4g}, "
          f"error {runner.reference_error:.4g} on {runner.split_name}, budget {runner.error_budget:.4g}", flush=True)
    out = Path(out)
    oracle = run_search(out, recorded, hp, grid, runner, "auto_score", s.search, s.trials, seed, overwrite,
                        s.chief, s.worker, s.tuner_id, s.time_budget)
    if oracle is None:
        return None
    report = write_report(out, trial_rows(oracle), runner.params(), runner, "auto_score", "auto")
    front = write_pareto(out, report["trials"], runner)
    return finish(out, report, front, runner, seed)


def finish(out, report, front, runner, seed):
    """Re-evaluate the chosen model on the test split, export and check it, write the summary."""
    best = report["best"]
    chosen = best if best and best["metrics"].get("within_budget") else None
    key = primary_metric(runner.task)
    summary = _summary(report, front, runner, chosen)
    failure = None
    if not chosen:  # the report's best is then over budget: nothing may look chosen
        shutil.rmtree(out / BEST_DIR, ignore_errors=True)
        for name in ("best.yaml", "best_command.txt"):
            (out / name).unlink(missing_ok=True)
    else:
        model = load_reference(out / BEST_DIR)
        summary["test"] = {key: evaluate_model(model.model, model.data)[key],
                           "reference": runner.reference.run.metric(key)}
        if runner.held_out is not None:
            summary["held_out"] = paired_difference(model.model, runner.reference.model, runner.data, runner.held_out)
        try:
            settings = ExportSettings.from_dict({"formats": ("tflite", "onnx")})  # every TFLite variant, int8 too
            check = export_and_check(model, out / "exported", settings, overwrite=True, seed=seed)
        except CheckFailed as e:
            failure, check = e, read_run_report(out / "exported")
        summary["export"] = {"passed": check["passed"], "folder": str(out / "exported"),
                             **{r["variant"]: {k: r[k] for k in ("bytes", "gzip_bytes", "value", "agreement",
                                                                 "batch_latency_ms", "runtime")}
                                for r in check["files"]}}
    write_json(out / "summary.json", summary)
    text = summary_text(summary, runner)
    (out / "summary.md").write_text(text + "\n")
    print("\n" + text)
    if failure:
        raise failure
    return summary


def paired_difference(model, reference, data, idx):
    """The chosen model's and the reference's test error on the held-out test examples ``idx`` (none of
    them judged a trial), and the difference with its 95 % interval (normal approximation of the mean of
    the per-example differences, each −1, 0 or +1: a paired comparison)."""
    x, y = data.x_test[idx], data.y_test[idx]
    wrong = [predicted_classes(predict(m, x), data) != y for m in (model, reference)]
    d = wrong[0].astype(float) - wrong[1]
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"n": int(len(d)), "error": 100 * wrong[0].mean(), "reference": 100 * wrong[1].mean(),
            "difference": 100 * d.mean(), "ci95": [100 * (d.mean() - half), 100 * (d.mean() + half)]}


def read_run_report(folder):
    """The deployment check's ``report.json`` (written before a failed check raises)."""
    return json.loads((Path(folder) / "report.json").read_text())


def _summary(report, front, runner, chosen):
    rows = report["trials"]
    done = [r for r in rows if r["status"] == "COMPLETED"]
    s = runner.settings
    summary = {"objective": s.objective, "selection": runner.split_name,
               "reference": {"objective": runner.reference_objective,
                                                       "val_error": runner.reference_error},
               "error_budget": runner.error_budget, "trials": len(rows), "completed": len(done),
               "within_budget": sum(bool(r["metrics"].get("within_budget")) for r in done),
               "trial_seconds": sum(r["metrics"].get("seconds", 0.0) for r in done),
               "front": [r["trial"] for r in front], "chosen": None}
    if chosen:
        summary["chosen"] = {"trial": chosen["trial"], "values": chosen["values"],
                             **{k: chosen["metrics"][k] for k in ("objective", "ratio", "val_error", "bits_ratio")}}
        if "file" in chosen["metrics"]:  # --objective deployed-size: the file that was measured
            summary["chosen"]["file"] = VARIANTS[int(chosen["metrics"]["file"])]
    return summary


def summary_text(summary, runner):
    """The summary as markdown lines."""
    s, ref = runner.settings, summary["reference"]
    unit = " %" if runner.task == "classification" else " positions"
    lines = [f"# compress --method auto: {s.objective}",
             f"- trials judged on {summary['selection']}; reference: {s.objective} {ref['objective']:.4g}, "
             f"error there {ref['val_error']:.4g}{unit}; budget {summary['error_budget']:.4g}{unit}",
             f"- {summary['trials']} trials ({summary['completed']} completed, {summary['within_budget']} within "
             f"budget) in {summary['trial_seconds'] / 60:.1f} min of trial time; front: trials "
             f"{', '.join(summary['front']) or '-'} (pareto.md, pareto.png)"]
    chosen = summary["chosen"]
    if not chosen:
        return "\n".join(lines + ["- no trial within the budget: nothing chosen, nothing exported"])
    what = " ".join(f"{k}={v}" for k, v in chosen["values"].items())
    test = summary["test"]
    key = primary_metric(runner.task)
    against = " (its float32 TFLite file)" if chosen.get("file") else ""
    lines += [f"- chosen: trial {chosen['trial']} ({what}) -> best/"
              + (f", shipped as its {chosen['file']} file" if chosen.get("file") else ""),
              f"- {s.objective}: {chosen['objective']:.4g} = {chosen['ratio']:.3g}x better than the reference{against} "
              f"({chosen['bits_ratio']:.3g}x fewer storage bits); selection error {chosen['val_error']:.4g}{unit}",
              f"- test split (once, for the chosen model): {key} {test[key]:.4g}{unit} "
              f"(reference {test['reference'] if test['reference'] is None else format(test['reference'], '.4g')}{unit})"]
    held = summary.get("held_out")
    if held:
        lines.append(f"- held-out half of the test split ({held['n']} examples no trial was judged on): {held['error']:.4g} % "
                     f"vs the reference's {held['reference']:.4g} %, difference {held['difference']:+.2f} pp "
                     f"(95 % interval {held['ci95'][0]:+.2f} to {held['ci95'][1]:+.2f} pp, paired)")
    export = summary["export"]
    lines.append(f"- deployment check: {'pass' if export['passed'] else 'FAIL'} ({export['folder']}); ONNX batch-256 "
                 f"latency {export['onnx']['batch_latency_ms']:.3f} ms; float32 TFLite gzip "
                 f"{export['tflite-float32']['gzip_bytes'] / 1024:.1f} KiB")
    return "\n".join(lines + deployed_lines(export, key, unit))


def deployed_lines(export, key, unit):
    """The smallest deployable files of the chosen model, gzip'd and raw, each with its own test score
    as its runtime computes it on the whole test split."""
    files = {v: f for v, f in export.items() if isinstance(f, dict)}
    lines = []
    for size, what in (("gzip_bytes", "gzip'd"), ("bytes", "raw")):
        variant = min(files, key=lambda v: files[v][size])
        f = files[variant]
        lines.append(f"- smallest {what} file: {variant} {f[size] / 1024:.1f} KiB, {key} {f['value']:.4g}{unit} "
                     f"in {f['runtime']} (exported/report.md)")
    return lines
