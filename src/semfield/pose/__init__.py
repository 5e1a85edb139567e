"""Camera pose estimation with no initial guess (SPINE-style): coarse from DINOv2 descriptors (regression or
retrieval over a bank of views rendered from the field), PnP on SIFT matches to renders, photometric
refinement through the differentiable renderer; and the iNeRF baseline that needs an initial guess."""

from .evaluate import evaluate_views
from .fit import coarse_model_for_run, descriptor_teacher
from .locate import LocateOptions, LocateResult, locate_photo

__all__ = ["LocateOptions", "LocateResult", "coarse_model_for_run", "descriptor_teacher", "evaluate_views",
           "locate_photo"]
