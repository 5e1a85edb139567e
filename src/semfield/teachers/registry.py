"""Teachers by name: a training config names each teacher by a spec ``{"kind": ..., options...}``.

Kinds: ``"dinov2"`` (:class:`~.dinov2.DinoV2Teacher`: ``model_id``, ``input_size``, ``jitter``, ``flip``), ``"clip"``
(:class:`~.clip.ClipTeacher`: ``model_id``, ``input_size``, ``mode``, ``pyramid_scales``...), ``"siglip"``
(:class:`~.siglip.SiglipTeacher`), ``"label"`` (the simulated teacher of generated scenes,
:class:`~.label.LabelTeacher`: ``patch_grid``, ``blur_sigma_patches``, ``noise_std``, ``confusion_rate``,
``seed``). Models are imported only when a teacher of their kind is built.
"""

from __future__ import annotations

from ..errors import SemfieldError
from ..scene.types import Scene
from .base import Teacher

KINDS = ("dinov2", "clip", "siglip", "label")


def build_teacher(name: str, spec: dict, scene: Scene | None = None, device: str = "cpu") -> Teacher:
    """The teacher described by ``spec``, named ``name`` (the field head it trains).

    Raises:
        SemfieldError: unknown kind or option, or weights that cannot be loaded.
    """
    options = dict(spec)
    kind = options.pop("kind", name)
    try:
        if kind == "dinov2":
            from .dinov2 import DinoV2Teacher

            teacher = DinoV2Teacher(device=device, **options)
        elif kind == "clip":
            from .clip import ClipTeacher

            teacher = ClipTeacher(device=device, **options)
        elif kind == "siglip":
            from .siglip import SiglipTeacher

            teacher = SiglipTeacher(device=device, **options)
        elif kind == "label":
            from .label import LabelTeacher

            if scene is None:
                raise SemfieldError("the label teacher needs its scene")
            teacher = LabelTeacher.from_scene(scene, **options)
        else:
            raise SemfieldError(f"teacher {name!r}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    except TypeError as exc:
        raise SemfieldError(f"teacher {name!r}: bad options ({exc})") from None
    teacher.name = name
    return teacher
