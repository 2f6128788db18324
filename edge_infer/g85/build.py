"""One ``<Map>``'s device, bins and rows, as :mod:`.parser` meets them, made into a :class:`G85Map`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import InputError
from ..wafer import BOUNDARY, DEFECT, NORMAL
from .codes import BIN_TYPES, EI_NS, G85Error, bin_type_key, format_code, parse_code

_DECIMAL_ROW = re.compile(r"[0-9\s]*")
_LONG_NUMBER = re.compile(r"[0-9]{10}")
_QUALITY = {"pass": NORMAL, "fail": DEFECT}


@dataclass
class G85Map:
    """One wafer read from a G85 file, at the size the file gives; ``orientation`` and ``origin`` are reported as
    written, never applied (``docs/g85.md`` says why)."""

    states: np.ndarray  # uint8 (Rows, Columns): 0 boundary, 1 normal, 2 defect
    label: Optional[int]  # ei:ClassIndex / ei:Class, or None
    map_id: str  # SubstrateId, else WaferId, else "#k" (1-based position in the file)
    index: int  # 0-based position in the file
    bin_type: str = "ascii"
    orientation: Optional[str] = None
    origin: Optional[str] = None
    bin_counts: dict = field(default_factory=dict)  # dies per code, NullBin included, as the writer writes codes


def _plain(attrs: Mapping[str, str]) -> dict[str, str]:
    """An element's un-namespaced attributes by lower-case name (files differ in case)."""
    return {k.lower(): v for k, v in attrs.items() if "}" not in k}


def _row_codes(text: str, bin_type: str, columns: Optional[int]) -> np.ndarray:
    """One row's bin codes as unsigned integers; ValueError says what is wrong."""
    if bin_type == "ascii":
        # Taken as is with exactly Columns characters (a space may be a code); else stripped.
        text = text if columns is not None and len(text) == columns else text.strip()
        return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    if bin_type == "decimal":
        if not _DECIMAL_ROW.fullmatch(text) or _LONG_NUMBER.search(text):
            bad = next(t for t in text.split() if not (t.isascii() and t.isdigit() and len(t) <= 9))
            raise ValueError(f"{bad[:20]!r} is not a Decimal bin code (up to 9 digits)")
        return np.array(text.split(), dtype=np.uint32)
    width = 1 if bin_type == "hex" else 2  # bytes per code
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"is not {BIN_TYPES[bin_type]} codes ({2 * width} hex digits each)") from None
    if len(raw) % width:
        raise ValueError(f"holds an odd number of hex digits for {BIN_TYPES[bin_type]} codes")
    return np.frombuffer(raw, dtype=f">u{width}")


class MapBuilder:
    """One ``<Map>`` being read: the parser hands it the device, bins and rows, :meth:`finish` makes the map.
    ``fail(message, row=)`` is the parser's error naming the file, this map and the line."""

    def __init__(self, index: int, attrs: Mapping[str, str], fail: Callable[..., G85Error], max_side: int) -> None:
        plain = _plain(attrs)
        self.index, self.fail, self.max_side = index, fail, max_side
        self.map_id = plain.get("substrateid") or plain.get("waferid") or f"#{index + 1}"
        self.class_index, self.class_name = attrs.get(f"{EI_NS}}}ClassIndex"), attrs.get(f"{EI_NS}}}Class")
        self.bin_type: Optional[str] = None  # set by the <Device>
        self.null = self.rows = self.columns = None  # type: Optional[int]
        self.orientation = self.origin = None  # type: Optional[str]
        self.bins: dict[int, tuple[Optional[str], Optional[int], str]] = {}  # code → (quality, BinCount, as written)
        self.row_codes: list[np.ndarray] = []

    def code(self, text: str, what: str) -> int:
        try:
            return parse_code(text, self.bin_type)  # type: ignore[arg-type]
        except InputError as exc:
            raise self.fail(f"{what}: {exc}") from None

    def set_device(self, attrs: Mapping[str, str]) -> None:
        attrs = _plain(attrs)
        if self.bin_type is not None:
            raise self.fail("has more than one <Device>")
        if "bintype" not in attrs:
            raise self.fail("its <Device> has no BinType (ASCII, Decimal, HexaDecimal or Integer2)")
        try:
            self.bin_type = bin_type_key(attrs["bintype"])
        except InputError as exc:
            raise self.fail(str(exc)) from None
        if attrs.get("nullbin"):
            self.null = self.code(attrs["nullbin"], "NullBin")
        for attr in ("Rows", "Columns"):
            value = attrs.get(attr.lower())
            if value is None:
                continue
            if not (value.strip().isascii() and value.strip().isdigit()) or int(value) < 1:
                raise self.fail(f"{attr}={value!r} is not a positive whole number")
            if int(value) > self.max_side:
                raise self.fail(f"{attr}={value} is more than {self.max_side}, the most edge-infer reads")
            setattr(self, attr.lower(), int(value))
        self.orientation, self.origin = attrs.get("orientation"), attrs.get("originlocation")

    def add_bin(self, attrs: Mapping[str, str]) -> None:
        attrs = _plain(attrs)
        text = attrs.get("bincode")
        if text is None:
            raise self.fail("has a <Bin> without a BinCode")
        code = self.code(text, "BinCode")
        if code in self.bins:
            raise self.fail(f"declares bin {text!r} twice")
        quality, count = attrs.get("binquality"), (attrs.get("bincount") or "").strip()
        if count and not (count.isascii() and count.isdigit()):
            raise self.fail(f"bin {text!r} has BinCount={attrs['bincount']!r}, not a whole number")
        self.bins[code] = (quality.strip().lower() if quality else None, int(count) if count else None, text)

    def start_row(self) -> int:
        """Checks there may be one more row; returns the most characters it may hold."""
        r = len(self.row_codes) + 1
        if self.bin_type is None:
            raise self.fail("<Data> comes before (or outside) its <Device>, which gives the BinType", row=r)
        if self.rows is not None and r > self.rows:
            raise self.fail(f"has more <Row>s than its Rows={self.rows}", row=r)
        if r > self.max_side:
            raise self.fail(f"has more than {self.max_side} rows, the most edge-infer reads", row=r)
        # Room for the codes, spaces between them and indentation; more is not a row.
        return (self.columns or self.max_side) * 6 + 4096

    def add_row(self, text: str) -> None:
        r = len(self.row_codes) + 1
        try:
            codes = _row_codes(text, self.bin_type, self.columns)  # type: ignore[arg-type]
        except ValueError as exc:
            raise self.fail(str(exc), row=r) from None
        if self.columns is None:
            if codes.size == 0:
                raise self.fail("an empty <Row>", row=r)
            if codes.size > self.max_side:
                raise self.fail(f"{codes.size} dies in a row, more than {self.max_side}", row=r)
            self.columns = codes.size
        elif codes.size != self.columns:
            raise self.fail(f"{codes.size} dies where its Columns={self.columns}", row=r)
        self.row_codes.append(codes)

    def finish(self, bin_map: dict[str, int], classes: tuple[str, ...]) -> G85Map:
        """The map's die states: the ``bin_map`` (--bin-map) codes, then NullBin, then BinQuality."""
        if self.bin_type is None:
            raise self.fail("has no <Device> (which gives BinType, NullBin, Rows and Columns)")
        if not self.row_codes:
            raise self.fail("has no <Data> with a <Row>, so no dies")
        if self.rows is not None and len(self.row_codes) != self.rows:
            raise self.fail(f"has {len(self.row_codes)} <Row>s but its Rows={self.rows}")
        explicit = {self.code(code, f"bin mapping {code!r}"): state for code, state in bin_map.items()}
        keys, self.row_codes = np.stack(self.row_codes), []
        # Codes are mostly small (ASCII characters, 0..65535): bincount and a lookup table are linear; np.unique sorts.
        if keys.max() < 1 << 17:
            counts = np.bincount(keys.ravel())
            uniq = slots = np.flatnonzero(counts)
            counts, index = counts[uniq], keys
        else:
            uniq, index, counts = np.unique(keys.ravel(), return_inverse=True, return_counts=True)
            slots, index = np.arange(len(uniq)), index.reshape(keys.shape)
        table = np.zeros(int(slots[-1]) + 1, dtype=np.uint8)
        table[slots] = [self._state(key, keys, explicit) for key in uniq.tolist()]
        found = dict(zip(uniq.tolist(), counts.tolist()))
        for key, (_, count, text) in self.bins.items():
            if count is not None and count != found.get(key, 0):
                raise self.fail(f"bin {text!r} declares BinCount={count} but {found.get(key, 0)} dies carry it")
        counted = {format_code(k, self.bin_type): v for k, v in found.items()}
        return G85Map(table[index], self._label(classes), self.map_id, self.index, self.bin_type, self.orientation,
                      self.origin, counted)

    def _state(self, key: int, keys: np.ndarray, explicit: dict[int, int]) -> int:
        if key in explicit:
            return explicit[key]
        if key == self.null:
            return BOUNDARY
        declared = self.bins.get(key)
        if declared is None:
            r, c = divmod(int(np.flatnonzero(keys.ravel() == key)[0]), keys.shape[1])
            known = ", ".join(v[2] for v in self.bins.values()) or "none declared"
            raise self.fail(f"column {c + 1}: bin code {format_code(key, self.bin_type)!r} is neither the NullBin "
                            f"nor one of its <Bin>s ({known}); declare it, or say what it means with --bin-map "
                            "CODE=STATE", row=r + 1)
        if declared[0] not in _QUALITY:
            raise self.fail(f"bin {declared[2]!r} has BinQuality={declared[0]!r}, neither Pass nor Fail; "
                            f"say what it means with --bin-map {declared[2]}=boundary|normal|defect")
        return _QUALITY[declared[0]]

    def _label(self, classes: tuple[str, ...]) -> Optional[int]:
        """ei:ClassIndex and ei:Class (either, or both if they agree) as an index into ``classes``."""
        index: Optional[int] = None
        if self.class_index is not None:
            t = self.class_index.strip()
            if not (t.isascii() and t.isdigit()) or int(t) >= len(classes):
                raise self.fail(f"ei:ClassIndex={self.class_index!r} is not a class index 0..{len(classes) - 1}")
            index = int(t)
        if self.class_name is not None:
            lowered = [c.lower() for c in classes]
            name = self.class_name.strip().lower()
            if name not in lowered:
                raise self.fail(f"ei:Class={self.class_name!r} is not a known class ({', '.join(classes)})")
            if index is not None and lowered[index] != name:
                raise self.fail(f"ei:ClassIndex={index} is {classes[index]} here but the map says "
                                f"ei:Class={self.class_name!r}; it was written with another class order")
            index = lowered.index(name)
        return index
