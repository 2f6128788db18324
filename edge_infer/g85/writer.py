"""Writing SEMI G85: maps streamed into one ``<Maps>`` document, atomically (see the package docstring)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Optional
from xml.sax.saxutils import quoteattr

import numpy as np

from ..errors import InputError
from ..files import PathLike, atomic_path
from ..wafer import CLASS_NAMES, DEFECT, MAP_SIZE, NORMAL, as_labels, as_states
from .codes import BIN_TYPES, EI_NS, FORMAT_REVISION, SEMI_NS, check_bins


class G85Writer:
    """Writes maps, block by block, into an open binary file as one ``<Maps>`` document; every map 26×26 with
    ``Orientation="0"`` and ``OriginLocation="2"``, so the first ``<Row>`` is the top row, as in ``data.npy``."""

    _ROW_ENDS = np.frombuffer(b"      <Row><![CDATA[", np.uint8), np.frombuffer(b"]]></Row>\n", np.uint8)

    def __init__(self, fh: IO[bytes], *, bin_type: str = "ascii", null_bin: Optional[str] = None,
                 pass_bin: Optional[str] = None, fail_bin: Optional[str] = None, lot_id: str = "edge-infer",
                 classes: tuple[str, ...] = CLASS_NAMES) -> None:
        self.bin_type, codes = check_bins(bin_type, null_bin, pass_bin, fail_bin)  # codes indexed by die state
        self.fh, self.lot_id, self.classes, self.count = fh, str(lot_id), tuple(classes), 0
        if len(self.lot_id) > 256:  # it is in every map's attributes, which readers cap
            raise InputError(f"lot id of {len(self.lot_id)} characters; at most 256")
        # Decimal codes are separated by spaces, the fixed-width types not: as every published example.
        sep = " " if self.bin_type == "decimal" else ""
        self._codes = np.array([list((code + sep).encode("ascii")) for code in codes], dtype=np.uint8)
        self._body = MAP_SIZE * self._codes.shape[1] - len(sep)  # a row's codes, without a separator after the last
        self._quoted = [quoteattr(text) for text in (*codes, self.lot_id)]
        self._labelled: Optional[bool] = None
        self._closed = False
        fh.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<Maps>\n')

    def write(self, maps: Any, labels: Any = None) -> None:
        """Append maps (one-hot, die states, or one map) with their labels (N or N×1 class indices, or None)."""
        if self._closed:
            raise InputError("this G85 writer is closed")
        states = as_states(maps)
        n = states.shape[0]
        lab = None if labels is None else as_labels(labels, n, len(self.classes))[:, 0]
        if self._labelled not in (None, lab is not None):
            raise InputError("give labels for every block of maps or for none")
        self._labelled = lab is not None
        normal, defect = ((states == s).sum(axis=(1, 2)) for s in (NORMAL, DEFECT))
        # Every <Row> line of the block at once: (n, 26, line length) bytes.
        row_open, row_close = (np.broadcast_to(end, (n, MAP_SIZE, end.size)) for end in self._ROW_ENDS)
        codes = self._codes[states].reshape(n, MAP_SIZE, -1)[..., : self._body]
        lines = np.concatenate([row_open, codes, row_close], axis=-1)
        null, ok, bad, lot = self._quoted
        parts = []
        for i in range(n):
            self.count += 1
            ident = quoteattr(f"{self.lot_id}-{self.count:06d}")
            label = "" if lab is None else f' ei:ClassIndex="{lab[i]}" ei:Class={quoteattr(self.classes[lab[i]])}'
            head = (
                f'<Map xmlns="{SEMI_NS}" xmlns:ei="{EI_NS}" SubstrateType="Wafer" SubstrateId={ident} '
                f'FormatRevision="{FORMAT_REVISION}"{label}>\n'
                f'  <Device BinType="{BIN_TYPES[self.bin_type]}" NullBin={null} Rows="{MAP_SIZE}" '
                f'Columns="{MAP_SIZE}" Orientation="0" OriginLocation="2" LotId={lot} ProductId="edge-infer">\n'
                f'    <Bin BinCode={ok} BinQuality="Pass" BinCount="{normal[i]}" BinDescription="normal die"/>\n'
                f'    <Bin BinCode={bad} BinQuality="Fail" BinCount="{defect[i]}" BinDescription="defective die"/>\n'
                f'    <Data MapName={ident} MapVersion="1">\n'
            )
            parts += [head.encode("utf-8"), lines[i].tobytes(), b"    </Data>\n  </Device>\n</Map>\n"]
        self.fh.write(b"".join(parts))

    def close(self) -> None:
        """End the document (idempotent)."""
        if not self._closed:
            self.fh.write(b"</Maps>\n")
            self._closed = True


def save_g85(path: PathLike, maps: Any, labels: Any = None, *, force: bool = False, **options: Any) -> Path:
    """Write ``maps`` (and ``labels``) to ``path`` as one G85 document, atomically."""
    with open_g85(path, force=force, **options) as w:
        w.write(maps, labels)
    return Path(path)


@contextlib.contextmanager
def open_g85(path: PathLike, *, force: bool = False, **options: Any) -> Iterator[G85Writer]:
    """A :class:`G85Writer` on a temporary file that becomes ``path`` only if the block succeeds."""
    with atomic_path(path, force=force) as tmp, open(tmp, "wb") as fh:
        w = G85Writer(fh, **options)
        yield w
        w.close()
