"""``semfield query``, ``segment`` and ``export``: questions to a trained run, from the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from .errors import SemfieldError

NUM = r"\d+(?:\.\d+)?"
EXEMPLAR = re.compile(rf"^(?P<view>.+)@(?P<coords>{NUM}(?:,{NUM}){{1,3}})$")


def split_list(value: str | None) -> list[str]:
    """Comma-separated option value -> its non-empty, stripped items (also used by the panoptic verb)."""
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def _engine(run_dir: Path, device: str = "cpu", progress: bool = True):
    from .query.engine import QueryEngine
    from .run import load_run, load_run_scene

    run = load_run(run_dir, device=device)
    if not run.field.config.heads:
        raise SemfieldError("this run has no feature heads (train it with teachers, e.g. "
                            "--set 'teachers={\"label\": {\"kind\": \"label\"}}')", run_dir)
    return QueryEngine(run, load_run_scene(run), progress=progress)


def _views(engine, specs: tuple[str, ...]):
    if specs:
        return [engine.scene.frame(s) for s in specs]
    return engine.scene.split("test")[:1] or engine.scene.frames[:1]


def _fmt_vec(v) -> str:
    return "(" + ", ".join(f"{float(x):.3f}" for x in v) + ")"


@click.command("query")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("phrases", nargs=-1)
@click.option("--negatives", help="Comma-separated negative phrases, added to the canonical ones "
                                  "(object, things, stuff, texture).")
@click.option("--only-negatives", is_flag=True, help="Use --negatives instead of the canonical negatives.")
@click.option("--exemplar", help="Query by example: VIEW@X,Y (a pixel, test:0@120,88) or VIEW@X0,Y0,X1,Y1 (a box).")
@click.option("--exemplar-image", type=click.Path(path_type=Path),
              help="Query by example: an image crop (PNG/JPEG) of what to find.")
@click.option("--head", help="Feature head to query (default: the first text-capable one; any head for "
                             "--exemplar).")
@click.option("--view", "views", multiple=True, help="Views for heatmaps (test:N, train:N or an image name; "
                                                      "repeatable; default test:0).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--no-progress", is_flag=True)
def query_cmd(run_dir: Path, phrases, negatives, only_negatives, exemplar, exemplar_image, head, views, out_dir,
              as_json, no_progress) -> None:
    """Where is it? Text query (several PHRASES = any of them) or --exemplar, answered on a trained run.

    Prints the best 3D point and the object's 3D box; writes relevancy heatmaps per view (PNG overlay cut
    at 0.5, raw .npy), relevancy.ply (the surface with per-point relevancy) and query.json into --out.

    \b
    EXAMPLES
      semfield query runs/default "red coffee mug" --view test:3 --out q/mug
      semfield query runs/default "mug" "cup" --negatives "bowl" --out q/cup --json
      semfield query runs/default --exemplar test:0@120,88 --head dinov2 --out q/ex
      semfield query runs/default --exemplar train:5@40,60,90,120 --out q/box
      semfield query runs/default --exemplar-image mug_crop.png --head dinov2 --out q/crop
    """
    from .query.outputs import write_query
    from .run import check_output_dir

    if sum(map(bool, (phrases, exemplar, exemplar_image))) != 1:
        raise click.UsageError("give exactly one of PHRASES, --exemplar or --exemplar-image")
    m = EXEMPLAR.match(exemplar) if exemplar else None
    coords = [float(v) for v in m["coords"].split(",")] if m else []
    if exemplar and len(coords) not in (2, 4):
        raise click.UsageError(f"--exemplar must look like test:0@120,88 or test:0@10,20,60,80, got {exemplar!r}")
    check_output_dir(out_dir)
    if exemplar_image is not None:
        import torch

        from .scene.images import load_rgb

        crop = torch.from_numpy(load_rgb(exemplar_image))
    engine = _engine(run_dir, progress=not no_progress)
    if exemplar:
        frame = engine.scene.frame(m["view"])
        result = (engine.exemplar(frame, coords[0], coords[1], head=head) if len(coords) == 2 else
                  engine.exemplar_box(frame, tuple(coords), head=head))
    elif exemplar_image is not None:
        result = engine.exemplar_image(crop, head=head, label=exemplar_image.name)
    else:
        result = engine.text(list(phrases), split_list(negatives), replace_negatives=only_negatives, head=head)
    summary = write_query(engine, result, _views(engine, views), out_dir)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    loc = result.localization
    click.echo(f"query {result.query!r} (head {result.head}): "
               f"{'found' if loc.found else 'nothing above 0.5 relevancy'}, score {loc.score:.3f}")
    click.echo(f"  3D point {_fmt_vec(loc.point)}")
    click.echo(f"  3D box   {_fmt_vec(loc.box[0])} .. {_fmt_vec(loc.box[1])} ({loc.n_points} surface points)")
    click.echo(f"  written to {Path(out_dir).absolute()}: {', '.join(summary['files'])}, query.json")


@click.command("segment")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--labels", required=True, help="Comma-separated label set, e.g. 'mug,book,table,floor,wall'.")
@click.option("--view", "views", multiple=True, help="Views to segment (repeatable; default test:0).")
@click.option("--head", help="Text-capable head (default: the first).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--no-progress", is_flag=True)
def segment_cmd(run_dir: Path, labels, views, head, out_dir, no_progress) -> None:
    """2D semantic segmentation of views against a label set (argmax of cosine to each label's text).

    \b
    EXAMPLES
      semfield segment runs/default --labels "mug,book,bowl,table,floor,wall" --view test:0 --out seg/
    """
    from .query.outputs import write_segmentation
    from .run import check_output_dir

    names = split_list(labels)
    if not names:
        raise click.UsageError("--labels needs at least one label")
    check_output_dir(out_dir)
    engine = _engine(run_dir, progress=not no_progress)
    files = write_segmentation(engine, names, _views(engine, views), out_dir, head=head)
    click.echo(f"segmented {len(files) // 2} view(s) into {Path(out_dir).absolute()}: {', '.join(files)}")


@click.command("export")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--ply", "ply_path", type=click.Path(path_type=Path), required=True, help="Output .ply file.")
@click.option("--query", "phrases", multiple=True, help="Add per-point relevancy of this text query "
                                                        "(repeatable: any of them).")
@click.option("--labels", help="Add a per-point 'label' (index into these comma-separated labels).")
@click.option("--features", "features_head", help="Add this head's per-point features as f_0..f_{D-1}.")
@click.option("--no-progress", is_flag=True)
def export_cmd(run_dir: Path, ply_path: Path, phrases, labels, features_head, no_progress) -> None:
    """Export the scene's surface as a PLY point cloud (colour, and optionally relevancy, labels, features).

    \b
    EXAMPLES
      semfield export runs/default --ply scene.ply
      semfield export runs/default --ply mug.ply --query "red coffee mug" --labels "mug,table,floor"
    """
    from .query.outputs import export_cloud
    from .run import check_output_dir

    check_output_dir(Path(ply_path).absolute().parent)
    engine = _engine(run_dir, progress=not no_progress)
    result = engine.text(list(phrases)) if phrases else None
    info = export_cloud(engine, ply_path, result=result, labels=split_list(labels), features=features_head)
    extra = f" with {', '.join(info['properties'])}" if info["properties"] else ""
    click.echo(f"wrote {info['points']} points{extra} to {info['path']}")


COMMANDS = (query_cmd, segment_cmd, export_cmd)
