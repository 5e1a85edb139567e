"""``semfield eval`` and ``semfield bench``: the evaluation harness from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import SemfieldError


def _fmt(value, spec: str = "{:.3f}") -> str:
    return "n/a" if value is None else spec.format(value)


@click.command("eval")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--tasks", help="Comma-separated tasks (default: all that apply): render, features, localization, "
                              "segmentation, points3d, latency, pose, panoptic.")
@click.option("--out", "out_file", type=click.Path(path_type=Path),
              help="Where to write the full report (default RUN/eval.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON instead of the summary.")
@click.option("--pose-views", type=click.IntRange(min=1), help="Locate only this many test views (evenly spaced).")
@click.option("--pose-bank", type=click.IntRange(min=8), help="Views rendered for the pose model's bank.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--no-progress", is_flag=True, help="Do not show progress bars.")
def eval_cmd(run_dir: Path, tasks, out_file, as_json: bool, pose_views, pose_bank, device: str,
             no_progress: bool) -> None:
    """Evaluate a trained run against its scene's ground truth with every protocol that applies.

    The scene must be a generated one (it carries ground truth). Writes RUN/eval.json (or --out) and prints
    the flat summary; tasks the run cannot answer (e.g. text queries without a text-capable head) are listed
    as skipped with the reason.

    \b
    EXAMPLES
      semfield eval runs/tiny
      semfield eval runs/tiny --tasks localization,segmentation --json
      semfield eval runs/default --out results/default-eval.json --no-progress
      semfield eval runs/default --tasks pose --pose-views 4 --pose-bank 96
    """
    from .atomic import atomic_write_json
    from .harness.evaluate import evaluate_run

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    options = {k: v for k, v in (("pose_views", pose_views), ("pose_bank", pose_bank)) if v is not None}
    report = evaluate_run(run_dir, tasks=task_list, device=device, progress=not no_progress, options=options)
    target = out_file or (run_dir / "eval.json")
    try:
        atomic_write_json(target, report)
    except OSError as exc:
        raise SemfieldError(f"cannot write the report ({exc.strerror or exc})", target) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"evaluated {report['run']} (iteration {report['iteration']}); report: {target}")
    for key, value in report["summary"].items():
        if value is not None:
            click.echo(f"  {key:32s} {_fmt(value, '{:.4g}')}")
    for task, reason in report["skipped"].items():
        click.echo(f"  skipped {task}: {reason}")


@click.command("bench")
@click.option("--suite", type=click.Choice(["smoke", "quick", "full"]), default="quick", show_default=True,
              help="smoke: 1 tiny scene (a minute, checks the runner); quick: 3 default scenes; full: 6 default "
                   "+ 2 room scenes.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Output folder (default outputs/bench-SUITE).")
@click.option("--reuse", is_flag=True, help="Keep runs already trained and evaluated in --out (default: retrain).")
@click.option("--ground-truth-bounds", is_flag=True,
              help="A/B only: train with each scene's ground-truth focus and room boxes instead of the boxes "
                   "found from the images (help no real capture gives).")
@click.option("--scenes", "only", help="Run only these of the suite's scenes, comma-separated (e.g. "
                                       "default-0,room-1), with the suite's settings.")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def bench_cmd(suite: str, out_dir: Path | None, reuse: bool, ground_truth_bounds: bool, only: str | None,
              no_progress: bool) -> None:
    """Generate a suite's scenes, train and evaluate each, and write bench.json and report.md.

    Every step is the semfield command a person would type, run as its own process; the report lists each
    command with its wall time and peak memory. Needs the [bench] and [teachers] extras.

    \b
    EXAMPLES
      semfield bench --suite smoke --out outputs/bench-smoke
      MUJOCO_GL=egl semfield bench --suite quick --out bench/results/suite_quick
      semfield bench --suite quick --out bench/results/suite_quick --reuse
      semfield bench --suite quick --out bench/results/suite_quick_gt_bounds --ground-truth-bounds
      semfield bench --suite full --scenes default-0,room-0 --out outputs/bench-two
    """
    from .harness.report import FIGURES, fmt
    from .harness.runner import run_suite

    out = out_dir or Path("outputs") / f"bench-{suite}"
    scenes = [n.strip() for n in only.split(",") if n.strip()] if only else None
    result = run_suite(suite, out, reuse=reuse, progress=not no_progress, ground_truth_bounds=ground_truth_bounds,
                       only=scenes)
    click.echo(f"suite {suite}: {len(result['scenes'])} scene(s) in {result['wall_seconds'] / 60:.1f} min; "
               f"{out / 'bench.json'}, {out / 'report.md'}")
    for key, value in result["summary"].items():
        if key in FIGURES and value is not None:
            label, spec = FIGURES[key]
            click.echo(f"  {label:52s} {fmt(value, spec)}")


COMMANDS = [eval_cmd, bench_cmd]
