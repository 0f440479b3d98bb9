"""Right for the Right Reasons (RRR; Ross, Hughes and Doshi-Velez, IJCAI 2017): the peer method.

RRR penalises the input gradient of the model's log-probabilities where an annotation says the
evidence must not be::

    L_rrr = sum over pixels and channels of (A * d/dx sum_k log p_k(x))^2

with ``A`` = 1 on the irrelevant region. Here it retrains the same ABN from the same annotations as
the map loss does: the teacher maps of the editor (``models/correct.py``), upsampled to the image
the way the editor shows them (bilinear, half-pixel centres), ``A = 1 - teacher``. ``p`` is the
product's head, the perception branch, whose logits depend on the attention map too, so the
penalty reaches the attention branch through M. :func:`edge_runtime.models.retrain.finetune`
adds it as the loss term ``"rrr"`` (``RetrainConfig(losses=("att", "per", "rrr"))``, weight
``rrr_weight``): whatever parts train, the gradient runs through the whole network to the input,
so a step costs a double backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["irrelevant_region", "input_gradient_penalty"]


def irrelevant_region(teacher: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """``A = 1 - teacher`` at image resolution: teacher maps (N, 1, h, w) in [0, 1] upsampled
    bilinearly with half-pixel centres (as :func:`models.correct.map_to_image`), (N, 1, H, W)."""
    if teacher.ndim != 4 or teacher.shape[1] != 1:
        raise ValueError(f"teacher maps must be (N, 1, h, w), got {tuple(teacher.shape)}")
    up = F.interpolate(teacher.float(), size=tuple(image_size), mode="bilinear", align_corners=False)
    return (1.0 - up).clamp_(0.0, 1.0)


def input_gradient_penalty(model, x: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """Per-sample RRR penalty (N,): ``sum((outside * d/dx sum_k log p_k)^2)`` over channels and
    pixels, with the graph kept (``create_graph``) so that it trains the model's parameters.

    ``x`` (N, 3, H, W) normalised images; ``outside`` (N, 1, H, W), 1 where evidence must not be.
    ``p`` is the perception branch of an ABN (the only head of a plain network).
    """
    from edge_runtime.models.train import logits_of

    if outside.shape[0] != x.shape[0] or outside.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"outside {tuple(outside.shape)} does not fit images {tuple(x.shape)}")
    x = x.detach().requires_grad_(True)
    logp = F.log_softmax(logits_of(model(x)).float(), dim=1)
    (grad,) = torch.autograd.grad(logp.sum(), x, create_graph=True)
    return ((outside * grad) ** 2).sum(dim=(1, 2, 3))
