"""The training recipe: its fields, the shipped defaults and the allowed values.

Torch-free, so the command line (``python -m training --help``) reads its
defaults and choices from here without importing torch, and the loop
(:mod:`training.train`) trains from the same object: one place, no mirror.

Shipped recipe (why): Adam, one-cycle LR schedule peaking at 5e-3 (30 %
warm-up), weight decay 1e-5, MSE, 100 epochs, batch 61. The course's constant
1e-3 stalls on a plateau that a peak of 5e-3 escapes (figures in the README).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from edge_infer.errors import InputError

SCHEDULES = ("constant", "onecycle", "cosine")
LOSSES = ("mse", "bce")
OPTIMIZERS = ("adam", "adamw")
#: Fields that take one of a fixed set of values.
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES}


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. Defaults are the shipped recipe; see :meth:`course`."""

    epochs: int = 100
    batch_size: int = 61
    lr: float = 5e-3
    weight_decay: float = 1e-5
    optimizer: str = "adam"
    schedule: str = "onecycle"
    warmup: float = 0.3
    loss: str = "mse"
    clip: float = 0.0
    seed: int = 0
    val_split: float = 0.1
    threads: int = 1

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(f"--{name} must be one of {', '.join(allowed)}, not {value!r}")
        if not 0.0 <= self.val_split < 1.0:
            raise InputError(f"--val-split must be in [0, 1), got {self.val_split}")

    @staticmethod
    def course(**overrides) -> "Recipe":
        """The course exercise's recipe (report: final training MSE 0.0316)."""
        base = dict(lr=1e-3, weight_decay=1e-5, optimizer="adam", schedule="constant", loss="mse", clip=0.0)
        base.update(overrides)
        return Recipe(**base)

    def as_dict(self) -> dict:
        return asdict(self)


#: The shipped defaults by field name (what the CLI shows in --help).
DEFAULTS = {f.name: f.default for f in fields(Recipe)}
