"""``semfield locate``: where was this photo taken? Camera pose with no initial guess, in a trained run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import SemfieldError


def _fmt_row(row) -> str:
    return "  [" + ", ".join(f"{float(v):9.5f}" for v in row) + "]"


@click.command("locate")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("photo_path", metavar="PHOTO", type=click.Path(path_type=Path))
@click.option("--intrinsics", help="The photo's camera as fx,fy,cx,cy in pixels (default: the scene's camera; "
                                   "the photo must then have the scene's image size).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--no-refine", is_flag=True, help="Stop after PnP (skip the photometric refinement).")
@click.option("--refit", is_flag=True, help="Refit the cached coarse model in RUN/pose/.")
@click.option("--bank-views", type=click.IntRange(min=8), default=None,
              help="Views rendered for the coarse model's bank (default 384; another count refits the cache).")
@click.option("--matcher", type=click.Choice(["flow", "sift"]), default="flow", show_default=True,
              help="How the photo is matched to renders in the fine rounds: dense optical flow or SIFT keypoints.")
@click.option("--json", "as_json", is_flag=True, help="Print the pose, stage timings and inlier count as JSON.")
@click.option("--no-progress", is_flag=True)
def locate_cmd(run_dir: Path, photo_path: Path, intrinsics, out_dir: Path, no_refine: bool, refit: bool,
               bank_views: int | None, matcher: str, as_json: bool, no_progress: bool) -> None:
    """Find the camera pose of PHOTO in RUN's scene, with no initial guess.

    The photo's DINOv2 patches are matched to a bank of views rendered from the field (their patch features
    and the 3D points under them; fitted once and cached in RUN/pose/), PnP on those 2D-3D matches, the
    best poses refined by render -> optical flow -> PnP rounds, then photometric refinement through the field (a
    per-scene regressor and descriptor retrieval give the coarse poses reported beside it). Prints the camera-to-world pose (OpenCV axes: x right, y down, z forward) and writes
    transforms.json (the photo as a nerfstudio frame, OpenGL axes), pose.json and locate.png (photo beside
    the render at the found pose) into --out.

    \b
    EXAMPLES
      semfield locate runs/default photo.png --out loc/photo
      semfield locate runs/default scene/images/frame_00003.png --out loc/f3 --json
      semfield locate runs/default small.png --intrinsics 122.9,122.9,64,64 --out loc/small
      semfield locate runs/default photo.png --matcher sift --out loc/photo-sift
    """
    import torch

    from .pose.bank import BankSettings
    from .pose.fit import coarse_model_for_run, descriptor_teacher
    from .pose.locate import LocateOptions, locate_photo
    from .pose.outputs import parse_intrinsics, write_locate_outputs
    from .run import check_output_dir, load_run, load_run_scene
    from .scene.images import load_rgb

    check_output_dir(out_dir)
    photo = torch.from_numpy(load_rgb(photo_path))
    H, W = photo.shape[:2]
    run = load_run(run_dir)
    scene = load_run_scene(run)
    if not scene.split("train"):
        raise SemfieldError("the run's scene has no training views to build the pose model from", run.scene_path)
    if intrinsics:
        intr = parse_intrinsics(intrinsics, W, H)
    else:
        intr = scene.split("train")[0].intrinsics
        if (W, H) != (intr.width, intr.height):
            raise SemfieldError(f"photo is {W}x{H} but the scene's camera is {intr.width}x{intr.height}; resize it "
                                "or give its camera with --intrinsics fx,fy,cx,cy", photo_path)
    teacher = descriptor_teacher()
    bank = BankSettings() if bank_views is None else BankSettings(n_rendered=bank_views)
    model = coarse_model_for_run(run, scene, teacher, bank=bank, progress=not no_progress, refit=refit)
    opts = LocateOptions(use_refine=not no_refine, fine_matcher=matcher)
    result = locate_photo(run.field, model, teacher, photo, intr, opts)
    files = write_locate_outputs(out_dir, photo_path, photo, intr, result, run.field, opts.render)
    if as_json:
        click.echo(json.dumps({"photo": str(photo_path), "c2w": result.c2w.tolist(), "seconds": result.seconds,
                               "inliers": result.inliers, "pnp_ok": result.pnp_ok, "method": result.method,
                               "chosen": result.chosen,
                               "fit_seconds": model.meta["fit_seconds"], "files": files}, indent=2))
        return
    click.echo(f"camera-to-world pose of {photo_path.name} (OpenCV axes; {result.inliers} PnP inliers"
               f"{'' if result.method == 'pnp' else ', photometric search'}, {result.seconds['total']:.1f} s):")
    for row in result.c2w:
        click.echo(_fmt_row(row))
    click.echo(f"  written to {Path(out_dir).absolute()}: {', '.join(files)}")


COMMANDS = (locate_cmd,)
