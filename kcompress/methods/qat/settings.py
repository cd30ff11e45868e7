"""Settings of ``--method qat``: quantization-aware training with tfmot, and what it preserves.

The fine-tuning keeps the reference's optimizer and learning rate (unset ``--lr``) for 3 epochs, measured
on LeNet-300-100 trained 20 epochs on the MNIST sample (test error 5.41 %; SGD + Nesterov at 0.05):
after 1, 3 and 5 epochs the Keras model has 5.47, 5.21 and 5.22 % (its int8 file 5.54, 5.27 and 5.20 %);
at a tenth of the rate (0.005) 5.97, 5.53 and 5.42 %. ``--preserve auto`` reads the incoming kernels: a
pruned model keeps its zeros, a clustered one its shared values, under tfmot's collaborative schemes.

Where clusters are preserved, tfmot sums the gradients of all the weights sharing a centroid into the
centroid's, as its clustering does: at the reference's SGD 0.05 every kernel fell to one or a few values
(test error 89.9 % from 16 values per kernel, 80.9 % from 90 % zeros + 16 values). Adam scales each
step by its own gradient, and :data:`CLUSTER_PRESERVING` takes the unset optimizer and rate: from those
two models (5.50 %, 6.09 %) 3 epochs at Adam 1e-3 reach 5.22 % and 5.73 % (int8 files 5.16, 5.76 %),
at 1e-4 5.33 % and 6.24 % (5.42, 6.46 %). Sparsity alone keeps the reference's rate: from 90 % zeros
(6.12 %) SGD 0.05 reaches 5.89 % (int8 5.87 %), Adam 1e-3 5.65 % (5.67 %), Adam 1e-4 6.12 % (6.40 %).
"""
from dataclasses import dataclass
from typing import Optional

from kcompress.core.settings import option
from kcompress.methods.base import FinetuneSettings
from kcompress.training.config import OPTIMIZERS

PRESERVE = ("auto", "none", "sparsity", "clusters", "both")
CLUSTER_PRESERVING = {"optimizer": "adam", "lr": 1e-3}  # the fine-tuning where clusters are kept (see above)


@dataclass(frozen=True)
class QATSettings(FinetuneSettings):
    """Quantization-aware training to int8, fine-tuned; the plain model holds the int8 kernels' values."""

    NAME, RUNNER = "qat", "kcompress.methods.qat.method"
    HELP = ("tfmot quantization-aware training (int8 weights and activations), fine-tuned; also writes "
            "model_int8.tflite, checked in LiteRT")
    SEARCH = {"epochs": (1, 3)}
    RECIPE, RECIPE_GAIN = {"epochs": 3}, 4.0  # 8-bit weights: 32/8 on storage bits

    preserve: str = option("auto", "what tfmot keeps while it trains: none, sparsity (the zeros of a pruned model), "
                                   "clusters (the shared values of a clustered one), both; auto: read from the "
                                   "kernels", choices=PRESERVE, sweep=True)
    epochs: int = option(3, "fine-tuning epochs", sweep=True)
    optimizer: Optional[str] = option(None, "fine-tuning optimizer (unset: the reference's; adam where clusters are "
                                            "preserved)", choices=OPTIMIZERS, sweep=True)
    lr: Optional[float] = option(None, "fine-tuning learning rate (unset: the reference's; 1e-3 where clusters are "
                                       "preserved)", sweep=True)

    def for_preserve(self, preserve):
        """These settings under the scheme ``preserve``: where clusters are kept, the unset optimizer and rate
        from :data:`CLUSTER_PRESERVING` (what ``run.json`` records)."""
        if preserve not in ("clusters", "both"):
            return self
        return self.replace(**{k: v for k, v in CLUSTER_PRESERVING.items() if getattr(self, k) is None})
