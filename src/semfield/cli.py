"""The ``semfield`` command: one verb per job, each a thin call into the packages.

Every bad input ends as one line ``semfield: error: <file>: <problem>`` on stderr and exit status 2
(click's own usage errors also exit 2); Ctrl-C during training saves a checkpoint and exits 130.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .errors import SemfieldError, one_line_warnings

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fail(message: str) -> None:
    click.echo(f"semfield: error: {' '.join(str(message).split())}", err=True)


class SemfieldGroup(click.Group):
    """A click group that turns :class:`SemfieldError` into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SemfieldError as exc:
            _fail(str(exc))
            ctx.exit(EXIT_USAGE)


def _fmt(value, spec: str = "{:.4f}") -> str:
    return "n/a" if value is None else spec.format(value)


def _echo_metrics(m: dict) -> None:
    click.echo(f"  PSNR {_fmt(m.get('psnr_test'), '{:.2f}')} dB   SSIM {_fmt(m.get('ssim_test'), '{:.3f}')}   "
               f"depth abs-rel {_fmt(m.get('depth_abs_rel_test'), '{:.3f}')} "
               f"(table+objects {_fmt(m.get('depth_abs_rel_fg_test'), '{:.3f}')})   "
               f"depth RMSE {_fmt(m.get('depth_rmse_test'), '{:.3f}')}")
    if "train_seconds" in m:
        click.echo(f"  {m.get('iterations')} iterations in {m['train_seconds']:.1f} s, "
                   f"peak memory {_fmt(m.get('peak_rss_mb'), '{:.0f}')} MiB")


@click.group(cls=SemfieldGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """semfield: scenes, fast radiance fields on CPU or GPU, and their evaluation.

    \b
    EXAMPLES
      semfield demo outputs/demo
      semfield make-scene scenes/tiny --preset tiny
      semfield train scenes/tiny --out runs/tiny --iterations 300
      semfield info runs/tiny
      semfield render runs/tiny --view test:0 --out renders/
      semfield query runs/tiny "red coffee mug" --out q/
    """


@cli.command("make-scene")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["tiny", "default", "room"]), default="default", show_default=True,
              help="Scene size: tiny (64 px, 20 views), default (192 px, 56 views), room (192 px, 108 views).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same scene (byte-identical).")
@click.option("--supersample", type=click.IntRange(min=1), default=None,
              help="RGB samples per pixel along each axis, box-filtered in linear light like a camera's pixel "
                   "[default: 3; 1 renders one aliased sample per pixel centre].")
@click.option("--no-progress", is_flag=True, help="Do not show progress bars.")
def make_scene_cmd(out: Path, preset: str, seed: int, supersample: int | None, no_progress: bool) -> None:
    """Generate a benchmark scene (LIBERO objects on a table in a room, rendered by MuJoCo) into OUT.

    OUT must not exist or be empty. Needs the [bench] extras (mujoco and the LIBERO assets).

    \b
    EXAMPLES
      semfield make-scene scenes/tiny --preset tiny
      MUJOCO_GL=egl semfield make-scene scenes/s3 --preset default --seed 3
      semfield make-scene scenes/aliased --supersample 1
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    from .data.generate import make_scene

    path = make_scene(out, preset=preset, seed=seed, progress=not no_progress, supersample=supersample)
    click.echo(f"scene written: {path}")


def _train_config(config_file: Path | None, sets: tuple[str, ...], **flags):
    from .settings import apply_overrides, parse_assignment, read_config_file
    from .train.config import TrainConfig

    config = read_config_file(config_file) if config_file is not None else TrainConfig()
    overrides = dict(parse_assignment(s) for s in sets)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return apply_overrides(config, overrides)


def _interrupted(run_dir: Path) -> None:
    from .train.checkpoint import STATE

    try:
        n = json.loads((run_dir / STATE).read_text(encoding="utf-8"))["iteration"]
        click.echo(f"interrupted at iteration {n}: checkpoint saved in {run_dir}; run the same command to resume",
                   err=True)
    except (OSError, ValueError, KeyError, TypeError):
        click.echo("interrupted before the first checkpoint: nothing saved", err=True)
    sys.exit(EXIT_INTERRUPTED)


@cli.command("train")
@click.argument("scene", type=click.Path(path_type=Path))
@click.option("--out", "run_dir", type=click.Path(path_type=Path), required=True,
              help="Run folder (created; an existing run with the same settings is resumed).")
@click.option("--iterations", type=click.IntRange(min=0), help="Training iterations (default 1500).")
@click.option("--max-seconds", type=click.FloatRange(min=0), help="Stop training after this many seconds.")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Where to train (default cpu).")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="JSON settings: a run's config.json or a TrainConfig object (missing keys: defaults).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a setting (dotted for nested ones; value parsed as JSON). Repeatable.")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def train_cmd(scene: Path, run_dir: Path, iterations, max_seconds, seed, device, config_file, sets,
              no_progress: bool) -> None:
    """Train a field on SCENE into the run folder --out, then evaluate its test views.

    SCENE is a nerfstudio transforms.json, a folder holding one, a NeRF-synthetic folder
    (transforms_train.json) or a COLMAP folder (sparse/0 + images/). Settings: defaults, then --config,
    then --set, then the explicit flags. Ctrl-C saves a checkpoint; the same command resumes, and the
    same command with more --iterations continues from the checkpoint.

    \b
    EXAMPLES
      semfield train scenes/tiny --out runs/tiny --iterations 300
      semfield train scenes/tiny/transforms.json --out runs/t2 --max-seconds 60 --no-progress
      semfield train my_capture/ --out runs/cap --set field.focus_vertices=4000000 --set render.step_voxels=2.0
      semfield train scenes/tiny --out runs/t3 --config runs/tiny/config.json --device cuda
    """
    from .pipeline import train_and_evaluate

    config = _train_config(config_file, sets, iterations=iterations, max_seconds=max_seconds, seed=seed,
                           device=device)
    try:
        metrics = train_and_evaluate(scene, run_dir, config, progress=not no_progress)
    except KeyboardInterrupt:
        _interrupted(run_dir.absolute())
    click.echo(f"run: {metrics['run_dir']}")
    _echo_metrics(metrics)
    click.echo(f"  metrics: {Path(metrics['run_dir']) / 'metrics.json'}")
    if metrics["pictures"]:
        click.echo(f"  pictures: {', '.join(metrics['pictures'])}")


@cli.command("render")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--view", help="A view of the run's scene: test:N, train:N or an image name.")
@click.option("--pose", "pose_file", type=click.Path(path_type=Path),
              help='JSON file with a 4x4 "transform_matrix" (camera-to-world, OpenGL axes) and optional '
                   "fl_x, fl_y, cx, cy, w, h.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--width", type=click.IntRange(1, 8192), help="Image width (default: the camera's).")
@click.option("--height", type=click.IntRange(1, 8192), help="Image height (default: the camera's).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def render_cmd(run_dir: Path, view, pose_file, out_dir: Path, width, height, device) -> None:
    """Render RGB and depth of a trained run from a scene view or a pose file.

    Writes NAME_rgb.png, NAME_depth_mm.png (16-bit planar depth, millimetres, 0 = none) and
    NAME_depth.png (colorized, near = red) into --out; NAME is the view (test_03) or the pose file's name.

    \b
    EXAMPLES
      semfield render runs/tiny --view test:3 --out renders/
      semfield render runs/tiny --pose pose.json --out renders/ --width 640 --height 480
    """
    from .export.views import read_pose_file, render_to_files, resize_intrinsics
    from .run import check_output_dir, load_run, load_run_scene

    if (view is None) == (pose_file is None):
        raise click.UsageError("give exactly one of --view and --pose")
    pose = read_pose_file(pose_file) if pose_file is not None else None
    run = load_run(run_dir, device=device)
    check_output_dir(out_dir)
    if view is not None:
        frame = load_run_scene(run).frame(view)
        c2w, intr = frame.c2w, frame.intrinsics
        split, _, idx = view.partition(":")
        name = f"{split}_{int(idx):02d}" if split in ("train", "test") else Path(frame.name).stem
    else:
        c2w, intr = pose
        if intr is None:
            scene = load_run_scene(run)
            intr = (scene.split("train") or scene.frames)[0].intrinsics
        name = pose_file.stem
    result = render_to_files(run.field, c2w, resize_intrinsics(intr, width, height), run.config.eval_render,
                             out_dir, name)
    click.echo(f"rendered {name} ({result['seconds']:.2f} s):")
    for f in result["files"]:
        click.echo(f"  {f}")


def _bounds_sources(run_dir: Path) -> dict[str, str]:
    """How a run found its focus and outer boxes (its bounds.json), in words; empty for older runs."""
    from .train.trainer import BOUNDS_FILE

    try:
        report = json.loads((run_dir / BOUNDS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    words = {"user": "set by the user", "auto": "found from the images", "cameras": "guessed from the cameras"}
    return {name: words.get(report.get(f"{name}_from"), str(report.get(f"{name}_from"))) for name in ("focus", "outer")}


@cli.command("info")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
def info_cmd(run_dir: Path) -> None:
    """Describe a run: scene, settings, progress, grid, metrics.

    \b
    EXAMPLES
      semfield info runs/tiny
    """
    from .run import load_run

    run = load_run(run_dir)
    cfg, fld = run.config, run.field
    shape = "x".join(str(n) for n in fld.grid_shape)
    click.echo(f"run:        {run.run_dir}")
    click.echo(f"scene:      {run.scene_path}{'' if run.scene_path.exists() else '  (missing)'}")
    click.echo(f"iterations: {run.iteration} of {cfg.iterations}, trained {run.state.get('train_seconds', 0):.1f} s"
               f" (seed {cfg.seed}, {cfg.batch_rays} rays/batch, device {cfg.device})")
    click.echo(f"grid:       {shape} vertices, voxel {fld.voxel * 1000:.1f} mm (final {fld.final_voxel * 1000:.1f} mm,"
               f" outer x{cfg.field.outer_factor:g}), heads: {', '.join(cfg.field.heads) or 'none'}")
    found = _bounds_sources(run.run_dir)
    for name, (lo, hi) in (("focus", fld.focus_aabb), ("outer", fld.outer_aabb)):
        click.echo(f"{name} box:  [{', '.join(f'{v:.2f}' for v in lo)}] .. [{', '.join(f'{v:.2f}' for v in hi)}]"
                   + (f"  ({found[name]})" if name in found else ""))
    click.echo(f"sampling:   step {cfg.render.step_voxels:g} voxels (eval {cfg.eval_render.step_voxels:g}), "
               f"at most {cfg.render.max_samples} (eval {cfg.eval_render.max_samples}) per ray, "
               f"background {cfg.render.background}")
    metrics = run.metrics
    if metrics is None:
        click.echo("metrics:    not evaluated yet")
    else:
        click.echo(f"metrics ({metrics.get('n_test_views', '?')} test views):")
        _echo_metrics(metrics)


@cli.command("demo")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["tiny", "default", "room"]), default="default", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--iterations", type=click.IntRange(min=0), help="Training iterations (default 1500).")
@click.option("--no-progress", is_flag=True, help="Do not show progress bars.")
def demo_cmd(out: Path, preset: str, seed: int, iterations, no_progress: bool) -> None:
    """Generate a scene, train and evaluate it, and summarise: OUT/scene, OUT/run, OUT/summary.md.

    An existing OUT/scene is reused and an interrupted OUT/run resumes.

    \b
    EXAMPLES
      MUJOCO_GL=egl semfield demo outputs/demo
      semfield demo outputs/tiny --preset tiny --iterations 200
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    from .pipeline import run_demo

    overrides = {} if iterations is None else {"iterations": iterations}
    try:
        run_demo(out, preset=preset, seed=seed, progress=not no_progress, train_overrides=overrides)
    except KeyboardInterrupt:
        _interrupted(out.absolute() / "run")
    click.echo(f"demo written to {out.absolute()}\n")
    click.echo((out / "summary.md").read_text(encoding="utf-8").rstrip())


# Modules that define more verbs, each as a list ``COMMANDS`` of click commands.
VERB_MODULES = ("cli_query", "cli_eval", "cli_pose", "cli_panoptic")


def _add_verbs() -> None:
    import importlib

    for module in VERB_MODULES:
        for command in importlib.import_module(f".{module}", __package__).COMMANDS:
            cli.add_command(command)


_add_verbs()


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``semfield``)."""
    one_line_warnings()
    try:
        cli.main(args=argv, prog_name="semfield")
    except SemfieldError as exc:  # raised outside a verb (e.g. while parsing); verbs are handled by the group
        _fail(str(exc))
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
