"""Camera pose estimation with no initial guess (SPINE-style): coarse from DINOv2 (regression from global
descriptors; retrieval and PnP on dense patch matches against a bank of views rendered from the field, whose
3D points come from the field's depth), PnP on dense optical-flow matches to renders, photometric refinement through the
differentiable renderer; and the iNeRF baseline that needs an initial guess."""

from .evaluate import evaluate_views
from .fit import coarse_model_for_run, descriptor_teacher
from .locate import LocateOptions, LocateResult, locate_photo

__all__ = ["LocateOptions", "LocateResult", "coarse_model_for_run", "descriptor_teacher", "evaluate_views",
           "locate_photo"]
