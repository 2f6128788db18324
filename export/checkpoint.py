"""Reading a training checkpoint: the one place that knows its format.

A checkpoint is ``runs/NAME/checkpoint.pt``, a ``torch.save`` dict that loads
with ``torch.load(path, weights_only=True)`` (so loading never runs pickled
code)::

    {"format": "edge-infer-checkpoint", "format_version": 1,
     "model": state_dict of training.model.ConvAutoencoder,
     "recipe": {...}, "metrics": {...},
     "data": {"path": str, "sha256": str, "n_maps": int},
     "versions": {...}}

Anything else -- a missing file, another pickle, wrong keys or shapes,
non-finite weights -- becomes one :class:`DataFileError` naming the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edge_infer.errors import DataFileError
from training.run import CHECKPOINT as CHECKPOINT_NAME  # the writer owns the format and the name
from training.run import CHECKPOINT_FORMAT, CHECKPOINT_VERSION


@dataclass
class Checkpoint:
    """A validated checkpoint: the model (eval mode) and what the run recorded."""

    path: Path
    model: Any  # training.model.ConvAutoencoder; typed loosely so torch stays lazy
    recipe: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    sha256: str = ""

    @property
    def run_dir(self) -> Path:
        """The run folder the checkpoint sits in (where loss.png and metrics.json live)."""
        return self.path.parent

    @property
    def data_path(self) -> Optional[str]:
        """The training-data path the run recorded, if any."""
        value = self.data.get("path")
        return str(value) if value else None


def resolve_checkpoint_path(checkpoint_or_run: "str | Path") -> Path:
    """Accept a run folder (holding ``checkpoint.pt``) or the ``.pt`` file itself."""
    p = Path(checkpoint_or_run)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.exists():
        raise DataFileError(f"{p}: no such checkpoint (give a run folder or its {CHECKPOINT_NAME})")
    if not p.is_file():
        raise DataFileError(f"{p} is not a file")
    return p


def _plain_dict(value: Any, what: str, path: Path) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataFileError(f"{path}: '{what}' is a {type(value).__name__}, expected a dict")
    return value


def _why(exc: Exception) -> str:
    """The one informative line of a torch.load failure."""
    text = str(exc)
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            # A pickle holding objects other than plain tensors and containers.
            return "it holds Python objects other than weights: " + line.split("error:", 1)[1].strip().split(". ")[0]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:200]


def load_checkpoint(checkpoint_or_run: "str | Path") -> Checkpoint:
    """Load and validate a checkpoint; returns the model in eval mode.

    Raises :class:`DataFileError` with one clear message for anything that is
    not a complete, current edge-infer checkpoint of ``ConvAutoencoder``.
    """
    import torch

    from training.model import ConvAutoencoder

    path = resolve_checkpoint_path(checkpoint_or_run)
    raw = path.read_bytes()
    try:
        import io

        # TorchVersion (what ``torch.__version__`` is) is a plain str subclass;
        # allowing it accepts checkpoints that recorded the version unconverted
        # without letting any code-running object through.
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise DataFileError(f"{path} is not a loadable checkpoint ({_why(exc)})") from None
    if not isinstance(obj, dict):
        raise DataFileError(f"{path} is not an edge-infer checkpoint (holds a {type(obj).__name__}, not a dict)")
    if obj.get("format") != CHECKPOINT_FORMAT:
        raise DataFileError(f"{path} is not an edge-infer checkpoint (format {obj.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
    version = obj.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataFileError(f"{path}: bad checkpoint format_version {version!r}")
    if version > CHECKPOINT_VERSION:
        raise DataFileError(
            f"{path} has checkpoint format_version {version}; this exporter reads up to {CHECKPOINT_VERSION}"
        )
    state = obj.get("model")
    if not isinstance(state, dict):
        raise DataFileError(f"{path} holds no model state_dict under 'model'")

    model = ConvAutoencoder()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:4])}{' …' if len(extra) > 4 else ''}")
        raise DataFileError(f"{path}: model weights do not fit ConvAutoencoder ({'; '.join(parts)})")
    for key, ref in expected.items():
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(ref.shape):
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise DataFileError(f"{path}: weight {key} has shape {got}, expected {tuple(ref.shape)}")
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise DataFileError(f"{path}: weight {key} is not finite floating point")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    return Checkpoint(
        path=path,
        model=model,
        recipe=_plain_dict(obj.get("recipe"), "recipe", path),
        metrics=_plain_dict(obj.get("metrics"), "metrics", path),
        data=_plain_dict(obj.get("data"), "data", path),
        versions=_plain_dict(obj.get("versions"), "versions", path),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
