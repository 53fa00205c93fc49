"""Every method's facts in one table: name, description, kind, weights file and training recipe (the paper's
section 2.2 and Table 1). A leaf: `methods` (inference), `train`, the app and the study all read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srgan_core.paths import MODELS_DIR

SCALE = 4  # every method upscales 4x (the generator: two x2 sub-pixel stages); the project reads it from here


@dataclass(frozen=True)
class Recipe:
    """What a learned method optimises."""

    content: str  # "mse" (pixel loss) or "vgg" (VGG19 feature loss at `vgg_layer`)
    adversarial: bool
    vgg_layer: str | None = None  # "22" = phi_2,2, "54" = phi_5,4
    tv_weight: float = 0.0
    init_method: str | None = None  # the method whose trained generator starts the run


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    kind: str  # "interpolation" or "learned"
    kernel: str | None = None  # interpolation only: imresize's kernel
    recipe: Recipe | None = None  # learned only

    @property
    def learned(self) -> bool:
        return self.kind == "learned"

    @property
    def weights_file(self) -> Path:
        return MODELS_DIR / f"{self.name}.safetensors"

    @property
    def card_file(self) -> Path:
        """The weights' model card (how they were trained, and the weights the run started from)."""
        return MODELS_DIR / f"{self.name}.json"


def starts_dir() -> Path:
    """Where starting weights are kept that are no longer any method's shipped weights (the knob's alpha-0 end)."""
    return MODELS_DIR / "starts"


SPECS = {
    spec.name: spec
    for spec in (
        MethodSpec("nearest", "Nearest-neighbour x4 (the MOS low anchor)", "interpolation", kernel="box"),
        MethodSpec("bicubic", "MATLAB-compatible bicubic x4", "interpolation", kernel="cubic"),
        MethodSpec("srresnet-mse", "SRResNet trained on pixel MSE (best PSNR)", "learned", recipe=Recipe("mse", adversarial=False)),
        MethodSpec(
            "srgan-vgg22", "SRGAN, VGG19 phi_2,2 content loss + adversarial loss", "learned",
            recipe=Recipe("vgg", adversarial=True, vgg_layer="22", init_method="srresnet-mse"),
        ),
        MethodSpec(
            "srgan-vgg54", "SRGAN, VGG19 phi_5,4 content loss + adversarial loss (the paper's SRGAN)", "learned",
            recipe=Recipe("vgg", adversarial=True, vgg_layer="54", init_method="srresnet-mse"),
        ),
        MethodSpec(
            "srresnet-vgg22", "SRResNet on VGG19 phi_2,2 loss + total variation (Table 1 ablation)", "learned",
            recipe=Recipe("vgg", adversarial=False, vgg_layer="22", tv_weight=2e-8),
        ),
        MethodSpec(
            "srgan-mse", "SRGAN with pixel MSE content loss + adversarial loss (Table 1 ablation)", "learned",
            recipe=Recipe("mse", adversarial=True, init_method="srresnet-mse"),
        ),
    )
}
METHODS = tuple(SPECS)
LEARNED = tuple(name for name, spec in SPECS.items() if spec.learned)
ORIGINAL = "hr"  # the high-resolution original's method name, where it is scored (evaluate) and rated (the study)
ORIGINAL_LABEL = "original"  # how the app shows it
# The perception-distortion knob blends the second (1) with the weights of the first that it was fine-tuned from (0):
# network interpolation needs both ends to share a start, which the shipped srresnet-mse may have trained on past.
KNOB_ENDS = ("srresnet-mse", "srgan-vgg54")
