"""Direction encodings."""

from __future__ import annotations

import torch


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Real spherical-harmonics basis of unit directions ``[P, 3]`` up to ``degree`` (0–3): ``[P, (d+1)^2]``."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree >= 1:
        out += [-0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [1.0925484305920792 * xy, -1.0925484305920792 * yz, 0.31539156525252005 * (2 * zz - xx - yy),
                -1.0925484305920792 * xz, 0.5462742152960396 * (xx - yy)]
        if degree >= 3:
            out += [-0.5900435899266435 * y * (3 * xx - yy), 2.890611442640554 * xy * z,
                    -0.4570457994644658 * y * (4 * zz - xx - yy), 0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
                    -0.4570457994644658 * x * (4 * zz - xx - yy), 1.445305721320277 * z * (xx - yy),
                    -0.5900435899266435 * x * (xx - 3 * yy)]
    return torch.stack(out, dim=-1)
