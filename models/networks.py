"""Networks: the Attention Branch Network (ABN) and a plain baseline of the same backbone.

ABN (Fukui et al., CVPR 2019), sized for a 2-core edge box::

    image ─ FeatureExtractor ─ f (split tensor, C_b x H/8 x W/8) ─┬─ AttentionBranch ─ att_logits (GAP head)
                                                                   │                 └ M (1 x h x w, sigmoid)
                                                                   └─ synthesis(f, M) ─ PerceptionBranch ─ logits

The split point is the feature extractor's output, narrowed by a 1 x 1 channel bottleneck so that
few bytes cross the network. The back half is ``attention branch + synthesis + perception``: it is a
function of the split tensor alone, so the receiver recomputes M from what it receives.

Models are built by name from one registry: ``build_model("abn-s", num_classes=10)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "ABN",
    "PlainNet",
    "MODEL_REGISTRY",
    "register_model",
    "build_model",
    "fuse_batchnorm",
]

MODEL_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Class / factory decorator adding an entry to :data:`MODEL_REGISTRY`."""

    def deco(factory):
        if name in MODEL_REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        MODEL_REGISTRY[name] = factory
        return factory

    return deco


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; the error lists the names that exist."""
    try:
        factory = MODEL_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODEL_REGISTRY)}") from None
    model = factory(**kwargs)
    model.arch = name
    return model


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


class FeatureExtractor(nn.Module):
    """Three stride-2 stages and a 1 x 1 bottleneck: 3 x H x W -> C_b x H/8 x W/8 (ReLU'd)."""

    def __init__(self, widths: tuple[int, int, int] = (24, 48, 64), bottleneck: int = 16) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stage1 = nn.Sequential(ConvBNReLU(3, w1, stride=2), ConvBNReLU(w1, w1))
        self.stage2 = nn.Sequential(ConvBNReLU(w1, w2, stride=2), ConvBNReLU(w2, w2))
        self.stage3 = nn.Sequential(ConvBNReLU(w2, w3, stride=2), ConvBNReLU(w3, w3))
        self.bottleneck = ConvBNReLU(w3, bottleneck, k=1)
        self.out_channels = bottleneck

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        f = self.bottleneck(s3)
        return f, [s1, s2, s3, f]


class AttentionBranch(nn.Module):
    """Convolutions, K x 1 x 1 conv, then a GAP class head and a 1-channel sigmoid map M."""

    def __init__(self, cin: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBNReLU(cin, width), ConvBNReLU(width, width), ConvBNReLU(width, num_classes, k=1)
        )
        self.head = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.map = nn.Sequential(nn.Conv2d(num_classes, 1, 1, bias=False), nn.BatchNorm2d(1))

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.body(f)
        att_logits = self.head(a).mean(dim=(2, 3))
        m = torch.sigmoid(self.map(a))
        return att_logits, m


class PerceptionBranch(nn.Module):
    def __init__(self, cin: int, num_classes: int, width: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBNReLU(cin, width // 2),
            ConvBNReLU(width // 2, width, stride=2),
            ConvBNReLU(width, width),
        )
        self.fc = nn.Linear(width, num_classes)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(g).mean(dim=(2, 3)))


SYNTHESES = ("mul", "residual")


def synthesize(f: torch.Tensor, m: torch.Tensor, mode: str) -> torch.Tensor:
    """Combine features and map: ``M * f`` ("mul") or ``(1 + M) * f`` ("residual")."""
    if mode == "mul":
        return f * m
    if mode == "residual":
        return f * (1.0 + m)
    raise ValueError(f"synthesis must be one of {SYNTHESES}, got {mode!r}")


class ABN(nn.Module):
    """Attention Branch Network. ``forward`` returns ``(att_logits, per_logits, M)``."""

    def __init__(
        self,
        num_classes: int = 10,
        bottleneck: int = 16,
        synthesis: str = "mul",
        widths: tuple[int, int, int] = (24, 48, 64),
        head_width: int = 96,
    ) -> None:
        super().__init__()
        if synthesis not in SYNTHESES:
            raise ValueError(f"synthesis must be one of {SYNTHESES}, got {synthesis!r}")
        self.num_classes = num_classes
        self.synthesis = synthesis
        self.features = FeatureExtractor(widths, bottleneck)
        self.attention = AttentionBranch(bottleneck, num_classes)
        self.perception = PerceptionBranch(bottleneck, num_classes, head_width)
        self.config = {
            "num_classes": num_classes,
            "bottleneck": bottleneck,
            "synthesis": synthesis,
            "widths": list(widths),
            "head_width": head_width,
        }

    def back(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Back half from the split tensor: ``(att_logits, per_logits, M)``."""
        att_logits, m = self.attention(f)
        return att_logits, self.perception(synthesize(f, m, self.synthesis)), m

    def back_with_map(self, f: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Perception logits with a given (e.g. corrected) map M at the split resolution."""
        return self.perception(synthesize(f, m, self.synthesis))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f, _ = self.features(x)
        return self.back(f)


class PlainNet(nn.Module):
    """The same backbone and perception head without the attention branch (the baseline)."""

    def __init__(
        self, num_classes: int = 10, bottleneck: int = 16, widths=(24, 48, 64), head_width: int = 96
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = FeatureExtractor(tuple(widths), bottleneck)
        self.perception = PerceptionBranch(bottleneck, num_classes, head_width)
        self.config = {
            "num_classes": num_classes,
            "bottleneck": bottleneck,
            "widths": list(widths),
            "head_width": head_width,
        }

    def back(self, f: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.perception(f),)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        f, _ = self.features(x)
        return self.back(f)


@register_model("abn-s")
def _abn_s(num_classes=10, bottleneck=8, synthesis="mul", widths=(24, 48, 64), head_width=96) -> ABN:
    return ABN(num_classes, bottleneck, synthesis, tuple(widths), head_width)


@register_model("plain-s")
def _plain_s(num_classes=10, bottleneck=8, widths=(24, 48, 64), head_width=96) -> PlainNet:
    return PlainNet(num_classes, bottleneck, widths, head_width)


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d into the Conv2d before it (in place); returns ``model``.

    Export-only: the gradient graphs then contain plain convolutions and ReLUs, whose backward
    passes become transposed convolutions and masks.
    """
    model.eval()
    for module in list(model.modules()):
        children = list(module.named_children())
        for (_, a), (name_b, b) in zip(children, children[1:], strict=False):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                scale = b.weight / torch.sqrt(b.running_var + b.eps)
                with torch.no_grad():
                    a.weight.mul_(scale.reshape(-1, 1, 1, 1))
                    bias = a.bias if a.bias is not None else torch.zeros_like(b.running_mean)
                    a.bias = nn.Parameter(b.bias + (bias - b.running_mean) * scale)
                setattr(module, name_b, nn.Identity())
    return model
