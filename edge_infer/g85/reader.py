"""Reading SEMI G85: maps one at a time (:func:`iter_g85`) or in blocks (:class:`G85Source`). Below them a
:class:`Parser` runs expat over the untrusted bytes, refusing every hostile shape the moment it appears, and a
:class:`MapBuilder` turns each ``<Map>`` into a :class:`G85Map`."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional, Union
from xml.parsers import expat

import numpy as np

from ..files import PathLike
from ..wafer import BOUNDARY, CLASS_NAMES, DEFECT, NORMAL
from .codes import BIN_TYPES, EI_NS, G85Error, parse_bin_map

MAX_SIDE = 16384  # the largest side a map may have: 16384² dies is 256 MB of codes
#: The most characters of one tag's attributes, a comment, text outside a ``<Row>``, or an unfinished tag.
FIELD_LIMIT = 64 * 1024
CHUNK = 1 << 16  # bytes read at a time
KIB = f"{FIELD_LIMIT // 1024} KiB"
_DECIMAL_ROW = re.compile(r"[0-9\s]*")
_LONG_NUMBER = re.compile(r"[0-9]{10}")
_QUALITY = {"pass": NORMAL, "fail": DEFECT}
_DTYPES = {"ascii": "<u4", "decimal": "<u4", "hex": ">u1", "integer2": ">u2"}  # a row's codes kept as these bytes
_DIGITS = {"decimal": (9, string.digits), "hex": (2, string.hexdigits), "integer2": (4, string.hexdigits)}
_FORMATS = {"ascii": "{:c}", "decimal": "{:03d}", "hex": "{:02X}", "integer2": "{:04X}"}  # codes as reported

BinMap = Union[None, str, Mapping[str, Any]]


def iter_g85(source: Union[PathLike, IO[bytes]], *, bin_map: BinMap = None,
             digest: Optional[Any] = None) -> Iterator[G85Map]:
    """The maps of a G85 file (path or binary file) one by one, at their own size; ``bin_map`` overrides the states
    of the codes it names; ``digest`` (a hashlib object) is fed every byte read, so the sha256 costs no second pass.
    A path that cannot be read raises the OSError itself (FileNotFoundError, IsADirectoryError, …)."""
    codes = parse_bin_map(bin_map)
    with contextlib.nullcontext(source) if hasattr(source, "read") else open(source, "rb") as fh:  # type: ignore
        parser = Parser(getattr(fh, "name", "G85 stream"), codes)
        while True:
            chunk = fh.read(CHUNK)
            if digest is not None:
                digest.update(chunk)
            yield from parser.feed(chunk)
            if not chunk:
                return


def looks_like_g85(path: PathLike) -> bool:
    """True for a ``.xml``/``.g85`` file or one whose first bytes look like XML."""
    p = Path(path)
    if p.suffix.lower() in (".xml", ".g85"):
        return True
    try:
        with open(p, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 (Windows tools write it)
        head = head[2:].replace(b"\x00", b"")
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


class G85Source:
    """A G85 file as an :class:`edge_infer.io.MapSource`: opening it validates every map keeping only the labels
    (8 bytes a map), and ``raw_blocks`` reads the file again, one map in memory."""

    def __init__(self, source: PathLike, *, bin_map: BinMap = None) -> None:
        self.path, self.where, self.bin_map = Path(source), str(source), bin_map
        digest, labels, first = hashlib.sha256(), [], None
        self.map_bytes = 0  # the largest map, uint8
        for m in iter_g85(self.path, bin_map=bin_map, digest=digest):
            first = first or m
            if (first.label is None) != (m.label is None):
                lacking, having = (m, first) if m.label is None else (first, m)
                raise G85Error(f"{self.where}: map {lacking.map_id!r} carries no class (ei:ClassIndex) while map "
                               f"{having.map_id!r} does; label every map or none")
            labels.append(m.label)
            self.map_bytes = max(self.map_bytes, m.states.size)
        self.count = len(labels)
        self.labels = None if first.label is None else np.array(labels, dtype=np.int64).reshape(-1, 1)
        self.sha256: Optional[str] = digest.hexdigest()

    def raw_blocks(self, rows: int, *, hash: bool = False) -> Iterator[Any]:
        """Up to ``rows`` maps a block: uint8 (B, H, W), or a list where sizes differ; ``hash`` is not needed."""
        maps = (m.states for m in iter_g85(self.path, bin_map=self.bin_map))
        while block := list(itertools.islice(maps, rows)):
            yield np.stack(block) if len({b.shape for b in block}) == 1 else block


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
    bin_counts: dict = field(default_factory=dict)  # dies per code (zero-padded: '007'), NullBin included


class MapBuilder:
    """One ``<Map>`` being read: the parser hands it the device, bins and rows, :meth:`finish` makes the map.
    Attribute names come in lower case; ``fail(message, row=)`` makes the error naming file, map and line."""

    def __init__(self, index: int, attrs: Mapping[str, str], fail: Callable[..., G85Error]) -> None:
        self.index, self.fail = index, fail
        self.map_id = attrs.get("substrateid") or attrs.get("waferid") or f"#{index + 1}"
        self.class_index, self.class_name = attrs.get(f"{EI_NS}}}classindex"), attrs.get(f"{EI_NS}}}class")
        self.bin_type: Optional[str] = None  # set by the <Device>
        self.null = self.rows = self.columns = None  # type: Optional[int]
        self.orientation = self.origin = None  # type: Optional[str]
        self.data = False
        self.bins: dict[int, tuple[Optional[str], Optional[int], str]] = {}  # code → (quality, BinCount, as written)
        self.row_codes: list[bytes] = []

    def code(self, text: str, what: str) -> int:
        """A bin code as written to the integer compared: ASCII by character, the others by value (7 = 007)."""
        if self.bin_type == "ascii":
            if len(text) != 1:
                raise self.fail(f"{what}: ASCII bin code {text!r} must be exactly one character")
            return ord(text)
        width, digits = _DIGITS[self.bin_type]  # type: ignore[index]
        t = text.strip()
        if not (0 < len(t) <= width and all(c in digits for c in t)):
            kind = "" if self.bin_type == "decimal" else "hex "
            raise self.fail(f"{what}: {BIN_TYPES[self.bin_type]} bin code {text!r} must be 1 to {width} {kind}digits")
        return int(t, 10 if self.bin_type == "decimal" else 16)

    def set_device(self, attrs: Mapping[str, str]) -> None:
        if self.bin_type is not None:
            raise self.fail("has more than one <Device>")
        name = attrs.get("bintype")
        if name is None:
            raise self.fail("its <Device> has no BinType (ASCII, Decimal, HexaDecimal or Integer2)")
        self.bin_type = name.strip().lower().replace("hexadecimal", "hex")  # Hex is the short form files use
        if self.bin_type not in BIN_TYPES:
            raise self.fail(f"unknown BinType {name!r}; G85 bin types are ASCII, Decimal, HexaDecimal (Hex), Integer2")
        self.dtype = np.dtype(_DTYPES[self.bin_type])
        if attrs.get("nullbin"):
            self.null = self.code(attrs["nullbin"], "NullBin")
        for attr in ("Rows", "Columns"):
            value = attrs.get(attr.lower())
            if value is None:
                continue
            if not (value.strip().isascii() and value.strip().isdigit()) or int(value) < 1:
                raise self.fail(f"{attr}={value!r} is not a positive whole number")
            if int(value) > MAX_SIDE:
                raise self.fail(f"{attr}={value} is more than {MAX_SIDE}, the most edge-infer reads")
            setattr(self, attr.lower(), int(value))
        self.orientation, self.origin = attrs.get("orientation"), attrs.get("originlocation")

    def add_bin(self, attrs: Mapping[str, str]) -> None:
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

    def start_data(self) -> None:
        if self.bin_type is None:
            raise self.fail("<Data> comes before (or outside) its <Device>, which gives the BinType")
        if self.data:
            raise self.fail("has more than one <Data>")
        self.data = True

    def start_row(self) -> int:
        """Checks there may be one more row; returns the most characters it may hold."""
        r = len(self.row_codes) + 1
        if self.rows is not None and r > self.rows:
            raise self.fail(f"has more <Row>s than its Rows={self.rows}", row=r)
        if r > MAX_SIDE:
            raise self.fail(f"has more than {MAX_SIDE} rows, the most edge-infer reads", row=r)
        # Room for the codes, spaces between them and indentation; more is not a row.
        return (self.columns or MAX_SIDE) * 6 + 4096

    def add_row(self, text: str) -> None:
        r = len(self.row_codes) + 1
        codes = self._codes(text, r)
        n = len(codes) // self.dtype.itemsize
        if self.columns is None:
            if n == 0:
                raise self.fail("an empty <Row>", row=r)
            if n > MAX_SIDE:
                raise self.fail(f"{n} dies in a row, more than {MAX_SIDE}", row=r)
            self.columns = n
        elif n != self.columns:
            raise self.fail(f"{n} dies where its Columns={self.columns}", row=r)
        self.row_codes.append(codes)

    def _codes(self, text: str, r: int) -> bytes:
        """Row ``r``'s bin codes as the bytes of ``self.dtype`` integers (one copy per map at the end is cheap;
        one array per row is not)."""
        if self.bin_type == "ascii":
            # Taken as is with exactly Columns characters (a space may be a code); else stripped.
            text = text if len(text) == self.columns else text.strip()
            return text.encode("utf-32-le")
        if self.bin_type == "decimal":
            if not _DECIMAL_ROW.fullmatch(text) or _LONG_NUMBER.search(text):
                bad = next(t for t in text.split() if not (t.isascii() and t.isdigit() and len(t) <= 9))
                raise self.fail(f"{bad[:20]!r} is not a Decimal bin code (up to 9 digits)", row=r)
            return np.array(text.split(), dtype=self.dtype).tobytes()
        width, name = self.dtype.itemsize, BIN_TYPES[self.bin_type]
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise self.fail(f"is not {name} codes ({2 * width} hex digits each)", row=r) from None
        if len(raw) % width:
            raise self.fail(f"holds an odd number of hex digits for {name} codes", row=r)
        return raw

    def finish(self, bin_map: dict[str, int]) -> G85Map:
        """The map's die states: the ``bin_map`` (--bin-map) codes, then NullBin, then BinQuality."""
        if self.bin_type is None:
            raise self.fail("has no <Device> (which gives BinType, NullBin, Rows and Columns)")
        if not self.row_codes:
            raise self.fail("has no <Data> with a <Row>, so no dies")
        if self.rows is not None and len(self.row_codes) != self.rows:
            raise self.fail(f"has {len(self.row_codes)} <Row>s but its Rows={self.rows}")
        explicit = {self.code(code, f"bin mapping {code!r}"): state for code, state in bin_map.items()}
        keys = np.frombuffer(b"".join(self.row_codes), dtype=self.dtype).reshape(len(self.row_codes), self.columns)
        self.row_codes = []
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
        counted = {_FORMATS[self.bin_type].format(k): v for k, v in found.items()}
        return G85Map(table[index], self._label(), self.map_id, self.index, self.bin_type, self.orientation,
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
            raise self.fail(f"column {c + 1}: bin code {_FORMATS[self.bin_type].format(key)!r} is neither the NullBin "
                            f"nor one of its <Bin>s ({known}); declare it, or say what it means with --bin-map "
                            "CODE=STATE", row=r + 1)
        if declared[0] not in _QUALITY:
            raise self.fail(f"bin {declared[2]!r} has BinQuality={declared[0]!r}, neither Pass nor Fail; "
                            f"say what it means with --bin-map {declared[2]}=boundary|normal|defect")
        return _QUALITY[declared[0]]

    def _label(self) -> Optional[int]:
        """ei:ClassIndex and ei:Class (either, or both if they agree) as a class index."""
        index: Optional[int] = None
        if self.class_index is not None:
            t = self.class_index.strip()
            if not (t.isascii() and t.isdigit()) or int(t) >= len(CLASS_NAMES):
                raise self.fail(f"ei:ClassIndex={self.class_index!r} is not a class index 0..{len(CLASS_NAMES) - 1}")
            index = int(t)
        if self.class_name is not None:
            lowered = [c.lower() for c in CLASS_NAMES]
            name = self.class_name.strip().lower()
            if name not in lowered:
                raise self.fail(f"ei:Class={self.class_name!r} is not a known class ({', '.join(CLASS_NAMES)})")
            if index is not None and lowered[index] != name:
                raise self.fail(f"ei:ClassIndex={index} is {CLASS_NAMES[index]} here but the map says "
                                f"ei:Class={self.class_name!r}; it was written with another class order")
            index = lowered.index(name)
        return index


class Parser:
    """Feeds bytes to expat, refusing entities, attribute defaults and oversized fields the moment they appear;
    :meth:`feed` returns the maps completed so far."""

    def __init__(self, where: str, bin_map: dict[str, int]) -> None:
        self.where, self.bin_map = where, bin_map
        self.ready: list[G85Map] = []
        self.map: Optional[MapBuilder] = None
        self.n_maps = self.fed = 0
        self.stack: list[str] = []  # open elements, local lower-case names
        self.row: Optional[list[str]] = None  # text of the <Row> being read
        self.row_len = self.row_limit = 0
        self.loose = 0  # characters of text outside a <Row> since the last tag
        p = self.p = expat.ParserCreate(namespace_separator="}")
        # An entity must be declared before it can be expanded: refusing declarations refuses expansion.
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.EntityDeclHandler = p.UnparsedEntityDeclHandler = lambda name, *_: self._refuse(
            f"declares the XML entity {name!r}", "entities are never expanded or fetched")
        p.ExternalEntityRefHandler = lambda context, base, system_id, *_: self._refuse(
            f"refers to an external entity ({system_id})", "nothing outside the file is fetched")
        p.AttlistDeclHandler = lambda element, *_: self._refuse(
            f"declares attributes for <{element}> in its DOCTYPE", "declared defaults would add to every element")
        p.CommentHandler = self._comment
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        p.buffer_text = True

    def fail(self, message: str, *, row: Optional[int] = None) -> G85Error:
        """The error naming the file, the map and row being read, and the line."""
        where = self.where
        if self.map is not None:
            where += f": map {self.map.map_id!r}" + ("" if row is None else f", row {row}")
        return G85Error(f"{where}: {message} (line {self.p.CurrentLineNumber})")

    def _refuse(self, what: str, why: str) -> None:
        raise G85Error(f"{self.where} {what} (line {self.p.CurrentLineNumber}); {why}, so the file is refused "
                       "(G85 maps need none)")

    def _comment(self, data: str) -> None:
        if len(data) > FIELD_LIMIT:
            raise self.fail(f"a comment longer than {KIB}, the most edge-infer reads outside a <Row>")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rsplit("}", 1)[-1]  # without the namespace
        if attrs and sum(map(len, attrs.values())) > FIELD_LIMIT:
            longest = max(attrs, key=lambda k: len(attrs[k]))
            raise self.fail(f"<{local}> has attributes longer than {KIB} ({longest.rsplit('}', 1)[-1]} alone is "
                            f"{len(attrs[longest]):,} characters), the most edge-infer reads outside a <Row>")
        tag, parent, m = local.lower(), self.stack[-1] if self.stack else None, self.map
        attrs = {k.lower(): v for k, v in attrs.items()}  # files differ in case
        self.stack.append(tag)
        self.loose = 0
        if parent is None and tag not in ("maps", "map"):
            raise G85Error(f"{self.where}: the document's root is <{local}>, not <Maps> or <Map>; "
                           "not a SEMI G85 map file")
        if tag == "map":
            if m is not None:
                raise self.fail("a <Map> inside another <Map>")
            self.map = MapBuilder(self.n_maps, attrs, self.fail)
            self.n_maps += 1
        elif m is None:
            return
        elif tag == "row" and parent == "data":
            self.row, self.row_len, self.row_limit = [], 0, m.start_row()
        elif tag == "device":
            m.set_device(attrs)
        elif tag == "bin" and parent == "device":
            m.add_bin(attrs)
        elif tag == "data":
            m.start_data()

    def _text(self, data: str) -> None:
        if self.row is None:
            self.loose += len(data)
            if self.loose > FIELD_LIMIT:
                raise self.fail(f"more than {KIB} of text outside a <Row>, the most edge-infer reads")
            return
        self.row_len += len(data)
        if self.row_len > self.row_limit:
            raise self.fail(f"a <Row> of more than {self.row_limit} characters", row=len(self.map.row_codes) + 1)
        self.row.append(data)

    def _end(self, name: str) -> None:
        tag = self.stack.pop()
        self.loose = 0
        if tag == "row" and self.row is not None:
            self.map.add_row("".join(self.row))  # type: ignore[union-attr]
            self.row = None
        elif tag == "map":
            self.ready.append(self.map.finish(self.bin_map))  # type: ignore[union-attr]
            self.map = None

    def feed(self, chunk: bytes) -> list[G85Map]:
        """Parse the next bytes (none: the file ends here); the maps completed by them."""
        try:
            self.p.Parse(chunk, not chunk)
        except expat.ExpatError as exc:
            raise G85Error(f"{self.where} is not well-formed XML: {expat.ErrorString(exc.code)} (line {exc.lineno}, "
                           f"column {exc.offset + 1})") from None
        self.fed += len(chunk)
        # expat hands a tag over only when complete: stop an unfinished one (from CurrentByteIndex) growing unbounded.
        if self.fed - max(self.p.CurrentByteIndex, 0) > FIELD_LIMIT:
            raise self.fail(f"a tag, comment or declaration runs on for more than {KIB}, the most edge-infer reads "
                            "outside a <Row>")
        if not chunk and self.n_maps == 0:
            raise G85Error(f"{self.where} holds no <Map>")
        done, self.ready = self.ready, []
        return done
