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
from .codes import EI_NS, FORMAT_REVISION, SEMI_NS


class G85Writer:
    """Writes maps, block by block, into an open binary file as one ``<Maps>`` document; every map 26×26 in ASCII
    bins (NullBin ``.``, Pass ``1``, Fail ``X``) with ``Orientation="0"`` and ``OriginLocation="2"``, so the first
    ``<Row>`` is the top row, as in ``data.npy``."""

    _CODES = np.frombuffer(b".1X", np.uint8)  # indexed by die state
    _ROW_ENDS = np.frombuffer(b"      <Row><![CDATA[", np.uint8), np.frombuffer(b"]]></Row>\n", np.uint8)

    def __init__(self, fh: IO[bytes], *, lot_id: str = "edge-infer") -> None:
        self.fh, self.lot_id, self.count = fh, str(lot_id), 0
        if len(self.lot_id) > 256:  # it is in every map's attributes, which readers cap
            raise InputError(f"lot id of {len(self.lot_id)} characters; at most 256")
        self._labelled: Optional[bool] = None
        self._closed = False
        fh.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<Maps>\n')

    def write(self, maps: Any, labels: Any = None) -> None:
        """Append maps (one-hot, die states, or one map) with their labels (N or N×1 class indices, or None)."""
        if self._closed:
            raise InputError("this G85 writer is closed")
        states = as_states(maps)
        n = states.shape[0]
        lab = None if labels is None else as_labels(labels, n)[:, 0]
        if self._labelled not in (None, lab is not None):
            raise InputError("give labels for every block of maps or for none")
        self._labelled = lab is not None
        normal, defect = ((states == s).sum(axis=(1, 2)) for s in (NORMAL, DEFECT))
        # Every <Row> line of the block at once: (n, 26, line length) bytes.
        row_open, row_close = (np.broadcast_to(end, (n, MAP_SIZE, end.size)) for end in self._ROW_ENDS)
        lines = np.concatenate([row_open, self._CODES[states], row_close], axis=-1)
        lot = quoteattr(self.lot_id)
        parts = []
        for i in range(n):
            self.count += 1
            ident = quoteattr(f"{self.lot_id}-{self.count:06d}")
            label = "" if lab is None else f' ei:ClassIndex="{lab[i]}" ei:Class={quoteattr(CLASS_NAMES[lab[i]])}'
            head = (
                f'<Map xmlns="{SEMI_NS}" xmlns:ei="{EI_NS}" SubstrateType="Wafer" SubstrateId={ident} '
                f'FormatRevision="{FORMAT_REVISION}"{label}>\n'
                f'  <Device BinType="ASCII" NullBin="." Rows="{MAP_SIZE}" '
                f'Columns="{MAP_SIZE}" Orientation="0" OriginLocation="2" LotId={lot} ProductId="edge-infer">\n'
                f'    <Bin BinCode="1" BinQuality="Pass" BinCount="{normal[i]}" BinDescription="normal die"/>\n'
                f'    <Bin BinCode="X" BinQuality="Fail" BinCount="{defect[i]}" BinDescription="defective die"/>\n'
                f'    <Data MapName={ident} MapVersion="1">\n'
            )
            parts += [head.encode("utf-8"), lines[i].tobytes(), b"    </Data>\n  </Device>\n</Map>\n"]
        self.fh.write(b"".join(parts))

    def close(self) -> None:
        """End the document (idempotent)."""
        if not self._closed:
            self.fh.write(b"</Maps>\n")
            self._closed = True


def save_g85(path: PathLike, maps: Any, labels: Any = None, *, force: bool = False, lot_id: str = "edge-infer") -> Path:
    """Write ``maps`` (and ``labels``) to ``path`` as one G85 document, atomically."""
    with open_g85(path, force=force, lot_id=lot_id) as w:
        w.write(maps, labels)
    return Path(path)


@contextlib.contextmanager
def open_g85(path: PathLike, *, force: bool = False, lot_id: str = "edge-infer") -> Iterator[G85Writer]:
    """A :class:`G85Writer` on a temporary file that becomes ``path`` only if the block succeeds."""
    with atomic_path(path, force=force) as tmp, open(tmp, "wb") as fh:
        w = G85Writer(fh, lot_id=lot_id)
        yield w
        w.close()
