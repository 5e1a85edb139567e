"""What ``semfield locate`` writes: the pose as a nerfstudio frame, a JSON summary and a side-by-side picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write_json
from ..errors import SemfieldError
from ..export.pictures import error_map, save_picture, side_by_side
from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_image
from ..scene.nerfstudio import write_transforms
from ..scene.types import Frame, Intrinsics, Scene
from .locate import LocateResult

__all__ = ["parse_intrinsics", "write_locate_outputs"]


def parse_intrinsics(spec: str, width: int, height: int) -> Intrinsics:
    """``"fx,fy,cx,cy"`` (pixels; principal point with pixel centres at +0.5) for a ``width × height`` photo."""
    try:
        fx, fy, cx, cy = (float(v) for v in spec.split(","))
    except ValueError:
        raise SemfieldError(f"--intrinsics must be fx,fy,cx,cy (four numbers), got {spec!r}") from None
    if not (fx > 0 and fy > 0 and np.isfinite([fx, fy, cx, cy]).all()):
        raise SemfieldError(f"--intrinsics: focal lengths must be positive and all values finite, got {spec!r}")
    return Intrinsics(width=width, height=height, fx=fx, fy=fy, cx=cx, cy=cy)


def write_locate_outputs(out_dir: str | Path, photo_path: Path, photo: torch.Tensor, intr: Intrinsics,
                         result: LocateResult, fld: GridField, render_opts: RenderOptions) -> list[str]:
    """Write ``transforms.json`` (one nerfstudio frame: the photo at the found pose), ``pose.json`` (the
    result) and ``locate.png`` (photo | render at the found pose | absolute difference). Returns the names."""
    out_dir = Path(out_dir)
    frame = Frame(name=photo_path.name, image_path=photo_path.absolute(), c2w=np.asarray(result.c2w),
                  intrinsics=intr, split="test")
    write_transforms(Scene(root=out_dir, frames=[frame]), out_dir / "transforms.json")
    atomic_write_json(out_dir / "pose.json", {"photo": str(photo_path), **result.to_json()})
    device = next(iter(fld.sparse_grids().values())).values.device
    with torch.no_grad():
        render = render_image(fld, torch.as_tensor(result.c2w, dtype=torch.float32, device=device), intr,
                              render_opts)["rgb"].float().cpu().numpy()
    photo_np = photo.float().cpu().numpy()
    sheet = side_by_side([photo_np, render, error_map(render, photo_np, vmax=0.5)],
                         ["photo", "render at found pose", "|difference|"])
    save_picture(out_dir / "locate.png", sheet)
    return ["transforms.json", "pose.json", "locate.png"]
