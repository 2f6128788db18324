"""The G85 layer of the reader: elements and rows from :mod:`.parser` become :class:`G85Map` s (die states, bins, labels)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from ..wafer import BOUNDARY, DEFECT, NORMAL
from .codes import BIN_TYPES, EI_NS, G85Error, bin_type_key, format_code, parse_code
from .parser import FIELD_LIMIT, KIB, local

LUT_LIMIT = 1 << 17  # codes below are counted through a table; larger ones (rare Unicode ASCII codes) sort

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


def _row_codes(text: str, bin_type: str, columns: Optional[int]) -> tuple[Any, int]:
    """One row's codes as kept until the map ends, and how many; ValueError says what is wrong."""
    if bin_type == "ascii":
        # Taken as is with exactly Columns characters (a space may be a code); else stripped.
        text = text if columns is not None and len(text) == columns else text.strip()
        return text, len(text)
    if bin_type == "decimal":
        if not _DECIMAL_ROW.fullmatch(text) or _LONG_NUMBER.search(text):
            bad = next(t for t in text.split() if not (t.isascii() and t.isdigit() and len(t) <= 9))
            raise ValueError(f"{bad[:20]!r} is not a Decimal bin code (up to 9 digits)")
        tokens = text.split()
        return tokens, len(tokens)
    width = 1 if bin_type == "hex" else 2  # bytes per code
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"is not {BIN_TYPES[bin_type]} codes ({2 * width} hex digits each)") from None
    if len(raw) % width:
        raise ValueError(f"holds an odd number of hex digits for {BIN_TYPES[bin_type]} codes")
    return raw, len(raw) // width


class _Map:
    """One ``<Map>`` being read: its device, bins and rows, then its die states."""

    def __init__(self, index: int, attrs: Mapping[str, str], fail: Callable[..., G85Error], max_side: int) -> None:
        plain = _plain(attrs)
        self.index, self.fail, self.max_side = index, fail, max_side
        self.map_id = plain.get("substrateid") or plain.get("waferid") or f"#{index + 1}"
        self.class_index, self.class_name = attrs.get(f"{EI_NS}}}ClassIndex"), attrs.get(f"{EI_NS}}}Class")
        self.device = self.data = False
        self.bin_type = "ascii"
        self.null = self.rows = self.columns = None  # type: Optional[int]
        self.orientation = self.origin = None  # type: Optional[str]
        self.bins: dict[int, tuple[Optional[str], Optional[int], str]] = {}  # code → (quality, BinCount, as written)
        self.row_parts: list[Any] = []  # each row's codes: str (ASCII), tokens (Decimal) or bytes (hex types)

    def code(self, text: str, what: str) -> int:
        try:
            return parse_code(text, self.bin_type)
        except InputError as exc:
            raise self.fail(f"{what}: {exc}") from None

    def set_device(self, attrs: dict[str, str]) -> None:
        if self.device:
            raise self.fail("has more than one <Device>")
        self.device = True
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

    def add_bin(self, attrs: dict[str, str]) -> None:
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

    def add_row(self, text: str) -> None:
        r = len(self.row_parts) + 1
        try:
            part, n = _row_codes(text, self.bin_type, self.columns)
        except ValueError as exc:
            raise self.fail(str(exc), row=r) from None
        if self.columns is None:
            if n == 0:
                raise self.fail("an empty <Row>", row=r)
            if n > self.max_side:
                raise self.fail(f"{n} dies in a row, more than {self.max_side}", row=r)
            self.columns = n
        elif n != self.columns:
            raise self.fail(f"{n} dies where its Columns={self.columns}", row=r)
        self.row_parts.append(part)

    def keys(self) -> np.ndarray:
        shape, parts = (len(self.row_parts), self.columns), self.row_parts
        if self.bin_type == "ascii":
            return np.frombuffer("".join(parts).encode("utf-32-le"), dtype="<u4").astype(np.int64).reshape(shape)
        if self.bin_type == "decimal":
            return np.array([t for row in parts for t in row]).astype(np.int64).reshape(shape)
        dtype = ">u1" if self.bin_type == "hex" else ">u2"
        return np.frombuffer(b"".join(parts), dtype=dtype).astype(np.int64).reshape(shape)

    def finish(self, explicit_codes: Callable[[str], dict[int, int]], classes: tuple[str, ...]) -> G85Map:
        """The map's die states: the --bin-map codes (``explicit_codes(bin_type)``), then NullBin, then BinQuality."""
        if not self.device:
            raise self.fail("has no <Device> (which gives BinType, NullBin, Rows and Columns)")
        if not self.data:
            raise self.fail("has no <Data>, so no dies")
        if not self.row_parts:
            raise self.fail("has a <Data> without any <Row>")
        if self.rows is not None and len(self.row_parts) != self.rows:
            raise self.fail(f"has {len(self.row_parts)} <Row>s but its Rows={self.rows}")
        keys, explicit = self.keys(), explicit_codes(self.bin_type)
        self.row_parts = []
        # Codes are small integers (ASCII characters, 0..65535): bincount and a lookup table are linear; np.unique sorts.
        small = keys.max() < LUT_LIMIT
        if small:
            all_counts = np.bincount(keys.ravel())
            uniq = np.flatnonzero(all_counts)
            counts = all_counts[uniq]
        else:
            uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        state_of = np.array([self._state(key, keys, explicit) for key in uniq.tolist()], dtype=np.uint8)
        found = dict(zip(uniq.tolist(), counts.tolist()))
        for key, (_, count, text) in self.bins.items():
            if count is not None and count != found.get(key, 0):
                raise self.fail(f"bin {text!r} declares BinCount={count} but {found.get(key, 0)} dies carry it")
        label = self._label(classes)
        if small:
            lut = np.zeros(int(uniq[-1]) + 1, dtype=np.uint8)
            lut[uniq] = state_of
            states = lut[keys]
        else:
            states = state_of[inverse.reshape(-1)].reshape(keys.shape)
        counted = {format_code(k, self.bin_type): v for k, v in found.items()}
        return G85Map(states, label, self.map_id, self.index, self.bin_type, self.orientation, self.origin, counted)

    def _state(self, key: int, keys: np.ndarray, explicit: dict[int, int]) -> int:
        if key in explicit:
            return explicit[key]
        if key == self.null:
            return BOUNDARY
        declared = self.bins.get(key)
        if declared is None:
            r, c = divmod(int(np.flatnonzero(keys.ravel() == key)[0]), keys.shape[1])
            known = ", ".join(v[2] for v in self.bins.values()) or "none declared"
            raise self.fail(f"column {c + 1}: bin code {format_code(key, self.bin_type)!r} is neither the NullBin nor "
                            f"one of its <Bin>s ({known}); declare it, or say what it means with --bin-map CODE=STATE",
                            row=r + 1)
        if declared[0] not in _QUALITY:
            raise self.fail(f"bin {declared[2]!r} has BinQuality={declared[0]!r}, neither Pass nor Fail; "
                            f"say what it means with --bin-map {declared[2]}=boundary|normal|defect")
        return _QUALITY[declared[0]]

    def _label(self, classes: tuple[str, ...]) -> Optional[int]:
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
            if index is None:
                index = lowered.index(name)
            elif lowered[index] != name:
                raise self.fail(f"ei:ClassIndex={index} is {classes[index]} here but the map says "
                                f"ei:Class={self.class_name!r}; it was written with another class order")
        return index


class MapBuilder:
    """The handler :class:`~edge_infer.g85.parser.Parser` calls: each ``<Map>`` becomes a :class:`G85Map` in ``ready``."""

    def __init__(self, where: str, bin_map: dict[str, int], classes: tuple[str, ...], max_side: int) -> None:
        self.where, self.bin_map, self.classes, self.max_side = where, bin_map, classes, max_side
        self.ready: list[G85Map] = []
        self.map: Optional[_Map] = None
        self.n_maps, self.saw_root = 0, False
        self.line: Callable[[], int] = lambda: 0  # the parser's current line
        self.stack: list[str] = []  # open elements, local lower-case names
        self.row: Optional[list[str]] = None  # text of the <Row> being read
        self.row_len = self.row_limit = 0
        self.loose = 0  # characters of text outside a <Row> since the last tag

    def fail(self, message: str, *, row: Optional[int] = None) -> G85Error:
        """The error naming the file, the map and row being read, and the line."""
        where = self.where
        if self.map is not None:
            where += f": map {self.map.map_id!r}" + ("" if row is None else f", row {row}")
        return G85Error(f"{where}: {message} (line {self.line()})")

    def start(self, name: str, attrs: dict[str, str]) -> None:
        tag = local(name).lower()
        parent = self.stack[-1] if self.stack else None
        self.stack.append(tag)
        self.loose, m = 0, self.map
        if parent is None:
            if tag not in ("maps", "map"):
                raise G85Error(f"{self.where}: the document's root is <{local(name)}>, not <Maps> or <Map>; not a SEMI G85 map file")
            self.saw_root = True
        if tag == "map":
            if m is not None:
                raise self.fail("a <Map> inside another <Map>")
            self.map = _Map(self.n_maps, attrs, self.fail, self.max_side)
            self.n_maps += 1
        elif m is None:
            return
        elif tag == "row" and parent == "data":
            r = len(m.row_parts) + 1
            if m.rows is not None and r > m.rows:
                raise self.fail(f"has more <Row>s than its Rows={m.rows}", row=r)
            if r > self.max_side:
                raise self.fail(f"has more than {self.max_side} rows, the most edge-infer reads", row=r)
            self.row, self.row_len = [], 0
            # Room for the codes, spaces between them and indentation; more is not a row.
            self.row_limit = (m.columns if m.columns is not None else self.max_side) * 6 + 4096
        elif tag == "device":
            m.set_device(_plain(attrs))
        elif tag == "bin" and parent == "device":
            m.add_bin(_plain(attrs))
        elif tag == "data":
            if not m.device:
                raise self.fail("<Data> comes before (or outside) its <Device>, which gives the BinType")
            if m.data:
                raise self.fail("has more than one <Data>")
            m.data = True

    def text(self, data: str) -> None:
        if self.row is None:
            self.loose += len(data)
            if self.loose > FIELD_LIMIT:
                raise self.fail(f"more than {KIB} of text outside a <Row>, the most edge-infer reads")
            return
        self.row_len += len(data)
        if self.row_len > self.row_limit:
            raise self.fail(f"a <Row> of more than {self.row_limit} characters", row=len(self.map.row_parts) + 1)  # type: ignore[union-attr]
        self.row.append(data)

    def end(self, name: str) -> None:
        tag, m = self.stack.pop(), self.map
        self.loose = 0
        if m is not None and tag == "row" and self.row is not None:
            text, self.row = "".join(self.row), None
            m.add_row(text)
        elif m is not None and tag == "map":
            self.ready.append(m.finish(self._explicit_codes, self.classes))
            self.map = None

    def _explicit_codes(self, bin_type: str) -> dict[int, int]:
        codes = {}
        for code, state in self.bin_map.items():
            try:
                codes[parse_code(code, bin_type)] = state
            except InputError as exc:
                raise G85Error(f"{self.where}: bin mapping {code!r} does not fit BinType {BIN_TYPES[bin_type]}: {exc}") from None
        return codes

    def close(self) -> None:
        if not self.saw_root:
            raise G85Error(f"{self.where} is empty; no <Maps> found")
        if self.n_maps == 0:
            raise G85Error(f"{self.where} holds no <Map>")
