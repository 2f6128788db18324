"""Inputs of any size through the generator a block at a time, each result block handed to a sink (anything with
``.write(block)``) before the next is read: bounded memory, the same results as one in-memory call."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from . import sampling
from .errors import InputError, TooLargeError
from .generator import Generated, ProgressFn, WaferGenerator
from .io import ArraySource, DataInput, MapSource, iter_maps, read_all
from .sampling import check_count
from .wafer import BLOCK_ROWS, DEFECT, MAP_SHAPE, N_STATES, as_maps, to_onehot


@dataclass
class Reconstruction:
    """Metrics of every map reconstructed (sums in float64), and the first maps for a picture. MSE: over all
    N×26×26×3 elements of (probabilities − one-hot)²; accuracy: share of dies whose most likely state is the
    input's; defect recall: share of defective dies reconstructed as defective."""

    squared: float = 0.0
    correct: int = 0
    dies: int = 0
    defects: int = 0
    found: int = 0
    first_inputs: list = field(default_factory=list)
    first_outputs: list = field(default_factory=list)

    def add(self, onehot: np.ndarray, probs: np.ndarray) -> None:
        truth, pred = onehot.argmax(axis=-1), probs.argmax(axis=-1)
        defects = truth == DEFECT
        self.squared += float(np.sum(np.square(probs - onehot), dtype=np.float64))
        self.correct += int(np.count_nonzero(pred == truth))
        self.dies += int(truth.size)
        self.defects += int(np.count_nonzero(defects))
        self.found += int(np.count_nonzero(pred[defects] == DEFECT))

    @property
    def count(self) -> int:
        return self.dies // (MAP_SHAPE[0] * MAP_SHAPE[1])

    @property
    def metrics(self) -> dict[str, float]:
        """``{"mse", "accuracy", "defect_recall"}`` (recall NaN without defects)."""
        return {"mse": self.squared / (self.dies * N_STATES) if self.dies else math.nan,
                "accuracy": self.correct / self.dies if self.dies else math.nan,
                "defect_recall": self.found / self.defects if self.defects else math.nan}


def reconstruction_metrics(onehot: Any, probs: Any) -> dict[str, float]:
    """MSE (probabilities vs one-hot), die-state accuracy and defect recall of one batch."""
    tally = Reconstruction()
    tally.add(np.asarray(onehot, np.float32), np.asarray(probs, np.float32))
    return tally.metrics


def reconstruct_blocks(gen: WaferGenerator, maps: Union[MapSource, Any], *, sink: Any = None, keep: int = 8,
                       progress: Optional[ProgressFn] = None) -> Reconstruction:
    """Reconstruct every map of ``maps`` (a :class:`~edge_infer.io.MapSource` or an array) a block at a time;
    the one-hot reconstructions go to ``sink`` (``.write(block)``) if given, the metrics cover every map."""
    source = maps if hasattr(maps, "raw_blocks") else ArraySource(as_maps(maps))
    result = Reconstruction()
    for _, block in iter_maps(source, progress=progress):
        probs = gen.reconstruct(block, raw=True)
        result.add(block, probs)
        recon = to_onehot(probs.argmax(axis=-1))
        if sink is not None:
            sink.write(recon)
        kept = sum(len(b) for b in result.first_inputs)
        if kept < keep:
            result.first_inputs.append(block[:keep - kept].copy())
            result.first_outputs.append(recon[:keep - kept].copy())
    return result


def augment_blocks(gen: WaferGenerator, per_source: int, inp: DataInput, *, sink: Any, shown: int = 5,
                   progress: Optional[ProgressFn] = None, **options: Any) -> dict[int, tuple[int, np.ndarray, np.ndarray]]:
    """``gen.augment(per_source, maps=all maps of inp, labels=...)`` written to ``sink``, a block of sources at a
    time (``method="mix"`` pairs sources across the whole input, so it reads it whole, within the memory ceiling).
    Returns, per class, ``(source row, source map, its first shown variants)`` of its first source, for a picture."""
    k = check_count(per_source, "per_source")
    if inp.labels is None:
        raise InputError(f"labels are needed for the maps of {inp.source} (one class index per map)")
    options["seed"] = sampling.check_seed(options.get("seed"))  # one seed for every block
    method = options.get("method") or gen.bundle.noise_defaults.method
    labels, total, done, examples = inp.labels, inp.maps.count * k, 0, {}
    parts: Iterable[tuple[int, np.ndarray, Generated]]
    if sampling.check_choice(method, sampling.METHODS, "method") == "mix":
        try:
            maps = read_all(inp.maps)
        except TooLargeError as exc:
            raise TooLargeError(f"method mix pairs sources across the whole input, so it reads it whole: {exc}") from None
        parts = [(0, maps, gen.augment(k, maps=maps, labels=labels, **options))]
    else:
        blocks = iter_maps(inp.maps, rows=max(1, BLOCK_ROWS // k))  # noise is keyed by global row
        parts = ((start, maps, gen.augment(k, maps=maps, labels=labels[start:start + len(maps)], source_offset=start,
                                           **options)) for start, maps in blocks)
    for start, maps, made in parts:
        sink.write(made.maps)
        block_labels = labels[start:start + len(maps), 0]
        for c in np.unique(block_labels):
            if int(c) not in examples:
                i = int(np.flatnonzero(block_labels == c)[0])
                examples[int(c)] = (start + i, maps[i].copy(), made.maps[k * i:k * i + min(k, shown)].copy())
        done += len(made)
        if progress is not None:
            progress(done, total)
    return examples
