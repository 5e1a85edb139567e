"""``semfield panoptic``: instances with one id across views, and their classes, from a trained run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_query import split_list


@click.command("panoptic")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--labels", help="Comma-separated label set (default for generated scenes: their classes).")
@click.option("--stuff", help="Comma-separated labels that are stuff (one segment each, no instances; default "
                              "for generated scenes: their stuff classes, else none).")
@click.option("--view", "views", multiple=True, help="Views to segment (test:N, train:N or an image name; "
                                                      "repeatable; default: every test view).")
@click.option("--min-cluster-size", type=int, default=20, show_default=True, help="HDBSCAN's smallest cluster "
              "(in sampled rendered pixels).")
@click.option("--cluster-selection", type=click.Choice(["leaf", "eom"]), default="leaf", show_default=True,
              help="HDBSCAN's cluster selection: leaf (the finest clusters; keeps close objects apart) or eom "
                   "(excess of mass; can keep one parent cluster for several objects).")
@click.option("--points", "max_points", type=int, default=20000, show_default=True,
              help="Rendered pixels sampled from the training views for clustering.")
@click.option("--head", help="Text-capable head that labels the instances (default: the first).")
@click.option("--fusion", type=click.Choice(["semantic", "instance"]), default="semantic", show_default=True,
              help="semantic: clusters with thing votes are things, pixels outside them follow their own "
                   "label; instance: each pixel takes the nearest cluster and its label (PVLFF).")
@click.option("--evaluate", is_flag=True, help="Also score the test views against the ground truth of a generated "
                                               "scene (PQ / SQ / RQ, coverage, precision / recall).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print panoptic.json.")
@click.option("--no-progress", is_flag=True)
def panoptic_cmd(run_dir: Path, labels, stuff, views, min_cluster_size, cluster_selection, max_points, head, fusion,
                 evaluate, out_dir, as_json, no_progress) -> None:
    """Panoptic segmentation of a run trained with an instance head: HDBSCAN instances (the same id in every
    view), each labelled by text similarity of its semantic features.

    Writes panoptic maps per view (PNG with a legend, 16-bit id PNGs), panoptic.json (instances, 3D boxes)
    and instances.ply (points with instance id and label) into --out.

    \b
    EXAMPLES
      semfield panoptic runs/default --out pan/
      semfield panoptic runs/default --labels "mug,book,bowl,table,floor,wall" --stuff "table,floor,wall" --out pan/
      semfield panoptic runs/default --view test:0 --view test:3 --min-cluster-size 60 --out pan/ --json
      semfield panoptic runs/default --evaluate --out pan/
      semfield panoptic runs/default --cluster-selection eom --out pan-eom/
    """
    from .panoptic.evaluate import evaluate_run, scene_labels
    from .panoptic.outputs import write_panoptic
    from .panoptic.scene_panoptic import PanopticSettings, ScenePanoptic
    from .query.engine import QueryEngine
    from .run import check_output_dir, load_run, load_run_scene

    check_output_dir(out_dir)
    run = load_run(run_dir)
    scene = load_run_scene(run)
    names, stuff_names = split_list(labels), split_list(stuff)
    if not names:
        if not scene.ground_truth:
            raise click.UsageError("--labels is needed (the scene has no class list)")
        names, default_stuff = scene_labels(scene)
        stuff_names = stuff_names or default_stuff
    elif stuff is None and scene.ground_truth:
        stuff_names = [s for s in scene_labels(scene)[1] if s in names]
    settings = PanopticSettings(min_cluster_size=min_cluster_size, max_points=max_points, text_head=head,
                                fusion=fusion, cluster_selection=cluster_selection)
    engine = QueryEngine(run, scene, progress=not no_progress)
    frames = [scene.frame(v) for v in views] if views else (scene.split("test") or scene.frames[:1])
    if evaluate:
        scores = evaluate_run(run, scene, labels=names, stuff=stuff_names, settings=settings, engine=engine,
                              progress=not no_progress)
        panoptic = scores.pop("panoptic")
        scores.pop("maps")
    else:
        panoptic = ScenePanoptic(engine, names, stuff_names, settings).fit(progress=not no_progress)
    summary = write_panoptic(panoptic, frames, out_dir)
    if evaluate:
        from .atomic import atomic_write_json

        atomic_write_json(Path(out_dir) / "scores.json", scores)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    things = sum(not i.stuff for i in panoptic.instances)
    click.echo(f"{len(panoptic.instances)} instances ({things} things, {len(panoptic.instances) - things} stuff) "
               f"from {summary['n_clusters']} clusters in {panoptic.seconds:.1f} s; written to "
               f"{Path(out_dir).absolute()}: panoptic.json, instances.ply, {len(summary['pictures'])} picture(s)")
    for inst in panoptic.instances:
        if not inst.stuff:
            lo, hi = inst.box_min, inst.box_max
            click.echo(f"  #{inst.id:<3d} {inst.name:<28s} {inst.n_points:6d} points  box "
                       f"({lo[0]:.2f}, {lo[1]:.2f}, {lo[2]:.2f}) .. ({hi[0]:.2f}, {hi[1]:.2f}, {hi[2]:.2f})")
    if evaluate:
        click.echo(f"PQ {scores['pq']:.1f}  SQ {scores['sq']:.1f}  RQ {scores['rq']:.1f}  (things PQ "
                   f"{scores['pq_things']:.1f}, stuff PQ {scores['pq_stuff']:.1f}); mCov {scores['mcov']:.1f}, "
                   f"precision {scores['precision']:.1f}, recall {scores['recall']:.1f}  -> scores.json")


COMMANDS = (panoptic_cmd,)
