"""SAM masks through transformers (``SamModel``) with automatic mask generation, as SAM's own generator:

1. a regular grid of ``points_per_side``² point prompts over the image; the image is embedded once;
2. each point gives three candidate masks (multimask output) with SAM's predicted IoU;
3. candidates are kept when predicted IoU ≥ ``pred_iou_thresh`` and stability ≥ ``stability_thresh``
   (IoU of the mask thresholded at ``+offset`` and ``-offset`` logits);
4. non-maximum suppression on the masks' boxes (IoU > ``nms_iou``), by predicted IoU;
5. the kept masks are painted largest first into one segment map (small masks stay on top), and
   segments smaller than ``min_pixels`` are dropped.

Preprocessing is SAM's: longest side resized to the model's input size, ImageNet mean / std, zero padding
to a square. The pure steps (grid, stability, box NMS, painting) are functions of their own.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SemfieldError
from ..scene.types import Frame

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def point_grid(n_per_side: int) -> torch.Tensor:
    """Cell centres of an ``n x n`` grid over the unit square: ``[n * n, 2]`` (x, y) in (0, 1)."""
    c = (torch.arange(n_per_side, dtype=torch.float32) + 0.5) / n_per_side
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def stability_score(logits: torch.Tensor, threshold: float = 0.0, offset: float = 1.0) -> torch.Tensor:
    """IoU of ``logits [M, H, W] > threshold + offset`` with ``> threshold - offset``: ``[M]``."""
    high = (logits > threshold + offset).flatten(1).sum(-1).float()
    low = (logits > threshold - offset).flatten(1).sum(-1).float()
    return torch.where(low > 0, high / low.clamp(min=1), torch.zeros_like(low))


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Boxes ``[M, 4]`` (x0, y0, x1, y1, exclusive ends) of boolean ``masks [M, H, W]`` (zeros when empty)."""
    _, H, W = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    ar_h, ar_w = torch.arange(H), torch.arange(W)
    y0 = torch.where(rows, ar_h, H).min(dim=1).values
    y1 = torch.where(rows, ar_h + 1, 0).max(dim=1).values
    x0 = torch.where(cols, ar_w, W).min(dim=1).values
    x1 = torch.where(cols, ar_w + 1, 0).max(dim=1).values
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).float()
    return torch.where(masks.flatten(1).any(dim=1)[:, None], boxes, torch.zeros_like(boxes))


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes ``[M, 4]`` kept by greedy non-maximum suppression, highest score first."""
    order = torch.argsort(scores, descending=True, stable=True)
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    keep = []
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[:, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=-1)
        iou = inter / (area[i] + area - inter).clamp(min=1e-9)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def paint_segments(masks: torch.Tensor, min_pixels: int = 1) -> np.ndarray:
    """One segment map ``[H, W]`` from boolean ``masks [M, H, W]``: largest painted first, so smaller masks
    stay on top; visible parts smaller than ``min_pixels`` become -1; ids ``0..K-1`` in painting order."""
    M = masks.shape[0]
    seg = torch.full(masks.shape[1:], -1, dtype=torch.long)
    for k in torch.argsort(masks.flatten(1).sum(-1), descending=True, stable=True).tolist():
        seg[masks[k]] = k
    ids, counts = torch.unique(seg[seg >= 0], return_counts=True)
    lut = torch.full((M + 1,), -1, dtype=torch.long)
    kept = ids[counts >= min_pixels]
    lut[kept] = torch.arange(kept.numel())
    return lut[seg].numpy()


class SamMasks:
    """Automatic SAM masks (see the module docstring).

    Args:
        model: a transformers ``SamModel`` (eval mode). model_id: its name, for the cache key.
        points_per_side, points_per_batch: prompt grid and how many prompts run at once.
        pred_iou_thresh, stability_thresh, stability_offset, nms_iou, min_pixels: the filters.
    """

    kind = "sam"
    uses_frame = False

    def __init__(self, model, model_id: str = "custom", points_per_side: int = 16, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_thresh: float = 0.92, stability_offset: float = 1.0,
                 nms_iou: float = 0.7, min_pixels: int = 16, device: str = "cpu"):
        self.model, self.model_id, self.device = model.eval(), model_id, torch.device(device)
        self.options = {"points_per_side": int(points_per_side), "points_per_batch": int(points_per_batch),
                        "pred_iou_thresh": float(pred_iou_thresh), "stability_thresh": float(stability_thresh),
                        "stability_offset": float(stability_offset), "nms_iou": float(nms_iou),
                        "min_pixels": int(min_pixels)}
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes()[:4096])
        self.weights_digest = digest.hexdigest()[:16]

    @classmethod
    def load(cls, model_id: str = "facebook/sam-vit-base", device: str = "cpu", **options) -> SamMasks:
        """Load ``SamModel.from_pretrained(model_id)`` (a hub id or a local folder)."""
        from transformers import SamModel

        try:
            model = SamModel.from_pretrained(model_id)
        except (OSError, ValueError) as exc:
            raise SemfieldError(f"cannot load SAM weights {model_id!r} ({str(exc).splitlines()[0][:200]})") from None
        return cls(model.to(device), model_id=model_id, device=device, **options)

    def settings(self) -> dict:
        return {"kind": self.kind, "model_id": self.model_id, "weights": self.weights_digest, **self.options,
                "version": 1}

    def _preprocess(self, image: torch.Tensor) -> tuple[torch.Tensor, float]:
        size = self.model.config.vision_config.image_size
        H, W = image.shape[:2]
        scale = size / max(H, W)
        h, w = round(H * scale), round(W * scale)
        x = F.interpolate(image.permute(2, 0, 1)[None].float(), size=(h, w), mode="bilinear", align_corners=False,
                          antialias=True)
        x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        return F.pad(x, (0, size - w, 0, size - h)), scale

    @torch.no_grad()
    def masks(self, image: torch.Tensor, frame: Frame | None = None) -> np.ndarray:
        """Segment map ``[H, W]`` of an image ``[H, W, 3]`` (float in [0, 1])."""
        o = self.options
        H, W = image.shape[:2]
        pixels, scale = self._preprocess(image)
        embeddings = self.model.get_image_embeddings(pixels.to(self.device))
        size = self.model.config.vision_config.image_size
        h, w = round(H * scale), round(W * scale)
        prompts = point_grid(o["points_per_side"]) * torch.tensor([w, h], dtype=torch.float32)
        kept_masks, kept_scores = [], []
        for batch in prompts.split(o["points_per_batch"]):
            out = self.model(image_embeddings=embeddings, input_points=batch[None, :, None, :].to(self.device),
                             input_labels=torch.ones(1, batch.shape[0], 1, dtype=torch.long, device=self.device),
                             multimask_output=True)
            logits = out.pred_masks[0].flatten(0, 1).float().cpu()  # [P * 3, h_low, w_low]
            iou = out.iou_scores[0].flatten().float().cpu()
            logits = F.interpolate(logits[:, None], size=(size, size), mode="bilinear", align_corners=False)
            logits = F.interpolate(logits[:, :, :h, :w], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
            good = (iou >= o["pred_iou_thresh"]) & (stability_score(logits, 0.0, o["stability_offset"])
                                                     >= o["stability_thresh"])
            kept_masks.append(logits[good] > 0)
            kept_scores.append(iou[good])
        masks, scores = torch.cat(kept_masks), torch.cat(kept_scores)
        masks, scores = masks[masks.flatten(1).any(dim=1)], scores[masks.flatten(1).any(dim=1)]
        if masks.shape[0] == 0:
            return np.full((H, W), -1, dtype=np.int64)
        keep = box_nms(mask_boxes(masks), scores, o["nms_iou"])
        return paint_segments(masks[keep], o["min_pixels"])
