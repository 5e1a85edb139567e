"""MuJoCo side of the generator: compile, settle objects with physics, measure them, render views."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...errors import SemfieldError
from ...scene.convention import opengl_to_opencv
from .assets import import_mujoco


@dataclass
class Simulation:
    """A compiled scene: ``roots[k]`` is the root body id of object k (in placement order)."""

    model: object
    data: object
    roots: list[int]

    @classmethod
    def from_xml(cls, xml: str, n_objects: int) -> Simulation:
        mujoco = import_mujoco()
        try:
            model = mujoco.MjModel.from_xml_string(xml)
        except ValueError as exc:
            raise SemfieldError(f"MuJoCo could not compile the scene ({str(exc).splitlines()[0]})") from None
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        roots = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"obj{k}/root") for k in range(n_objects)]
        return cls(model, data, roots)

    # ------------------------------------------------------------------------------------- object poses
    def _qpos_adr(self, k: int) -> int:
        jnt = self.model.body_jntadr[self.roots[k]]
        return int(self.model.jnt_qposadr[jnt])

    def _dof_adr(self, k: int) -> int:
        jnt = self.model.body_jntadr[self.roots[k]]
        return int(self.model.jnt_dofadr[jnt])

    def set_pose(self, k: int, pos, quat) -> None:
        """Put object k at ``pos [3]`` / ``quat [4]`` (w, x, y, z) at rest."""
        a, v = self._qpos_adr(k), self._dof_adr(k)
        self.data.qpos[a:a + 3] = pos
        self.data.qpos[a + 3:a + 7] = quat
        self.data.qvel[v:v + 6] = 0.0

    def root_pos(self, k: int) -> np.ndarray:
        return self.data.xpos[self.roots[k]].copy()

    def settle(self, steps: int) -> None:
        mujoco = import_mujoco()
        mujoco.mj_forward(self.model, self.data)
        for _ in range(steps):
            mujoco.mj_step(self.model, self.data)
        self.data.qvel[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    # ------------------------------------------------------------------------------------- geometry
    def visual_vertices(self, k: int, local: bool = False) -> np.ndarray:
        """World (or root-body-frame) vertices ``[V, 3]`` of object k's visible geoms (group ≤ 2)."""
        m, d = self.model, self.data
        root = self.roots[k]
        chunks = []
        for g in range(m.ngeom):
            if m.body_rootid[m.geom_bodyid[g]] != root or m.geom_group[g] > 2:
                continue
            R, t = d.geom_xmat[g].reshape(3, 3), d.geom_xpos[g]
            if m.geom_type[g] == 7 and m.geom_dataid[g] >= 0:  # mjGEOM_MESH
                mid = m.geom_dataid[g]
                v = m.mesh_vert[m.mesh_vertadr[mid]:m.mesh_vertadr[mid] + m.mesh_vertnum[mid]]
            else:  # primitive: its bounding box corners
                s = m.geom_rbound[g]
                v = np.array([[x, y, z] for x in (-s, s) for y in (-s, s) for z in (-s, s)]) * (1 / np.sqrt(3))
            chunks.append(v.astype(np.float64) @ R.T + t)
        if not chunks:
            raise SemfieldError(f"object {k} has no visible geometry")
        pts = np.concatenate(chunks)
        if local:
            Rb, tb = d.xmat[root].reshape(3, 3), d.xpos[root]
            pts = (pts - tb) @ Rb
        return pts

    def geom_labels(self, geom_class: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """Per-geom instance id (object k → k+1, stuff → 0) and stuff class index (objects → -1)."""
        m = self.model
        instance = np.zeros(m.ngeom + 1, np.int64)  # last entry: "no geom" (id -1)
        semantic = np.zeros(m.ngeom + 1, np.int64)
        root_to_id = {r: k + 1 for k, r in enumerate(self.roots)}
        mujoco = import_mujoco()
        for g in range(m.ngeom):
            root = int(m.body_rootid[m.geom_bodyid[g]])
            if root in root_to_id:
                instance[g] = root_to_id[root]
                semantic[g] = -1
            else:
                name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
                parts = name.split("/")
                semantic[g] = geom_class.get(parts[1], 0) if len(parts) > 2 and parts[0] == "stuff" else 0
        return instance, semantic


@dataclass
class View:
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, planar z in metres
    geom: np.ndarray  # [H, W] int64 geom id, -1 = none
    c2w: np.ndarray  # [4, 4] OpenCV axes, as MuJoCo rendered it


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] to linear light (IEC 61966-2-1)."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] to sRGB values (IEC 61966-2-1)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1.0 / 2.4) - 0.055)


def box_downsample(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor × factor`` blocks of an 8-bit sRGB image ``[H·f, W·f, 3]`` in linear light.

    Returns ``[H, W, 3]`` uint8. Each output pixel is the mean over its area, centred on its centre, so the
    pixel grid (and the intrinsics) are those of the ``H × W`` image.

    Example:
        >>> img = np.zeros((2, 4, 3), np.uint8); img[:, :2] = 255
        >>> box_downsample(img, 2)[0, :, 0].tolist()
        [255, 0]
    """
    if factor == 1:
        return rgb
    h, w = rgb.shape[0] // factor, rgb.shape[1] // factor
    lin = srgb_to_linear(rgb[: h * factor, : w * factor].astype(np.float64) / 255.0)
    mean = lin.reshape(h, factor, w, factor, 3).mean(axis=(1, 3))
    return np.round(linear_to_srgb(mean) * 255.0).astype(np.uint8)


def render_views(sim: Simulation, cameras: list[str], width: int, height: int,
                 supersample: int = 1) -> Iterator[View]:
    """Render RGB, planar depth and geom segmentation of each named camera; RGB with ``supersample²``
    samples per pixel (see :func:`box_downsample`), depth and segmentation at the pixel centres."""
    mujoco = import_mujoco()
    m, d = sim.model, sim.data
    renderer = fine = None
    try:
        renderer = mujoco.Renderer(m, height, width)
        fine = mujoco.Renderer(m, height * supersample, width * supersample) if supersample > 1 else renderer
    except Exception as exc:  # noqa: BLE001 - GL set-up errors come in many types
        if renderer is not None:
            renderer.close()
        raise SemfieldError(f"MuJoCo offscreen rendering failed ({exc}); try MUJOCO_GL=egl or osmesa") from None
    try:
        for name in cameras:
            cam = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, name)
            fine.update_scene(d, camera=cam)
            rgb = box_downsample(fine.render().copy(), supersample)
            renderer.enable_depth_rendering()
            renderer.update_scene(d, camera=cam)
            depth = renderer.render().copy()
            renderer.disable_depth_rendering()
            renderer.enable_segmentation_rendering()
            renderer.update_scene(d, camera=cam)
            seg = renderer.render().copy()
            renderer.disable_segmentation_rendering()
            geom = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1).astype(np.int64)
            c2w_gl = np.eye(4)
            c2w_gl[:3, :3] = d.cam_xmat[cam].reshape(3, 3)
            c2w_gl[:3, 3] = d.cam_xpos[cam]
            yield View(rgb, depth.astype(np.float32), geom, opengl_to_opencv(c2w_gl))
    finally:
        renderer.close()
        if fine is not renderer:
            fine.close()
