"""Reading SEMI G85: one ``<Map>`` at a time from an untrusted file (see the package docstring)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional, Union
from xml.parsers import expat

import numpy as np

from ..errors import InputError
from ..wafer import BOUNDARY, CLASS_NAMES, DEFECT, MAP_SIZE, NORMAL, ResizeNote, as_labels, resize_states
from .codes import BIN_TYPES, EI_NS, G85Error, PathLike, bin_type_key, format_code, parse_bin_map, parse_code


#: Largest side (rows or columns) a map may declare or have: 16384² dies is 256 MB of codes.
MAX_SIDE = 16384
#: Codes below this are counted and mapped through a table; larger ones (rare Unicode ASCII-type codes) sort.
LUT_LIMIT = 1 << 17
#: Bytes read from the file at a time.
CHUNK = 1 << 16
#: Maps converted per write when streaming to .npy (8 MB of one-hot float32).
WRITE_BLOCK = 1024

_DECIMAL_ROW = re.compile(r"[0-9\s]*")
_LONG_NUMBER = re.compile(r"[0-9]{10}")

# ---------------------------------------------------------------- reading


@dataclass
class G85Map:
    """One wafer read from a G85 file, at the size the file gives."""

    #: Die states uint8 (Rows, Columns): 0 boundary, 1 normal, 2 defect.
    states: np.ndarray
    #: Class index (``ei:ClassIndex`` / ``ei:Class``), or None when the map carries none.
    label: Optional[int]
    #: ``SubstrateId`` (or ``WaferId``) of the map, else ``#k`` (1-based position in the file).
    map_id: str
    #: 0-based position in the file.
    index: int
    bin_type: str = "ascii"
    #: ``Orientation`` as written (degrees of the flat/notch; "0": at the bottom), or None.
    orientation: Optional[str] = None
    #: ``OriginLocation`` as written, or None.
    origin: Optional[str] = None
    #: Die count per bin code, NullBin included, codes in the writer's form (Decimal 7 is ``"007"``): ``{"1": 400, "X": 50}``.
    bin_counts: dict = field(default_factory=dict)


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _plain(attrs: Mapping[str, str]) -> dict[str, str]:
    """An element's un-namespaced attributes by lower-case name (files differ in case)."""
    return {k.lower(): v for k, v in attrs.items() if "}" not in k}


def _attr(plain: Mapping[str, str], *names: str) -> Optional[str]:
    """The first of ``names`` (lower case) in :func:`_plain` attributes."""
    for n in names:
        v = plain.get(n)
        if v is not None:
            return v
    return None


class _MapBuilder:
    """What is known about the ``<Map>`` being read."""

    def __init__(self, index: int, attrs: Mapping[str, str]) -> None:
        self.index = index
        self.map_id = _attr(_plain(attrs), "substrateid", "waferid") or f"#{index + 1}"
        self.class_index = attrs.get(f"{EI_NS}}}ClassIndex")
        self.class_name = attrs.get(f"{EI_NS}}}Class")
        self.device = False
        self.bin_type: Optional[str] = None
        self.null: Optional[int] = None
        self.rows: Optional[int] = None
        self.columns: Optional[int] = None
        self.orientation: Optional[str] = None
        self.origin: Optional[str] = None
        #: code → (BinQuality lower-case or None, BinCount or None, code as written)
        self.bins: dict[int, tuple[Optional[str], Optional[int], str]] = {}
        self.data = False
        #: Each row's codes as read (str for ASCII, tokens for Decimal, bytes for the hex types),
        #: turned into one array when the map ends.
        self.row_parts: list[Any] = []


class _Reader:
    """expat handlers building one :class:`G85Map` at a time into ``ready``."""

    def __init__(self, where: str, bin_map: dict[str, int], classes: tuple[str, ...], max_side: int) -> None:
        self.where = where
        self.bin_map = bin_map
        self.classes = classes
        self.max_side = max_side
        self.ready: list[G85Map] = []
        self.stack: list[str] = []
        self.map: Optional[_MapBuilder] = None
        self.n_maps = 0
        self.row_text: Optional[list[str]] = None
        self.row_len = 0
        self.row_limit = 0
        self.saw_root = False
        self._explicit: dict[str, dict[int, int]] = {}
        p = expat.ParserCreate(namespace_separator="}")
        # Refuse the attacks at the door: an entity must be declared before it
        # can be expanded, and nothing is fetched from outside the file.
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.EntityDeclHandler = self._refuse_entity
        p.UnparsedEntityDeclHandler = self._refuse_unparsed
        p.ExternalEntityRefHandler = self._refuse_external
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        p.buffer_text = True
        p.ordered_attributes = False
        self.parser = p

    # -- errors

    def fail(self, message: str, *, row: Optional[int] = None) -> G85Error:
        where = self.where
        if self.map is not None:
            where += f": map {self.map.map_id!r}"
            if row is not None:
                where += f", row {row}"
        return G85Error(f"{where}: {message} (line {self.parser.CurrentLineNumber})")

    def _refuse_entity(self, name: str, is_param: int, *_: Any) -> None:
        raise G85Error(
            f"{self.where} declares the XML entity {name!r} (line {self.parser.CurrentLineNumber}); "
            "entities are never expanded or fetched, so the file is refused (G85 maps need none)"
        )

    def _refuse_unparsed(self, name: str, *_: Any) -> None:
        self._refuse_entity(name, 0)

    def _refuse_external(self, context: Any, base: Any, system_id: Any, public_id: Any) -> int:
        raise G85Error(f"{self.where} refers to an external entity ({system_id}); nothing outside the file is fetched")

    # -- elements

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        tag = _local(name).lower()
        parent = self.stack[-1] if self.stack else None
        self.stack.append(tag)
        if parent is None:
            if tag not in ("maps", "map"):
                raise G85Error(f"{self.where}: the document's root is <{_local(name)}>, not <Maps> or <Map>; not a SEMI G85 map file")
            self.saw_root = True
        if tag == "map":
            if self.map is not None:
                raise self.fail("a <Map> inside another <Map>")
            self.map = _MapBuilder(self.n_maps, attrs)
            self.n_maps += 1
            return
        m = self.map
        if m is None:
            return
        if tag == "device":
            self._device(m, attrs)
        elif tag == "bin" and parent == "device":
            self._bin(m, attrs)
        elif tag == "data":
            if not m.device:
                raise self.fail("<Data> comes before (or outside) its <Device>, which gives the BinType")
            if m.data:
                raise self.fail("has more than one <Data>")
            m.data = True
        elif tag == "row" and parent == "data":
            if m.rows is not None and len(m.row_parts) >= m.rows:
                raise self.fail(f"has more <Row>s than its Rows={m.rows}", row=len(m.row_parts) + 1)
            if len(m.row_parts) >= self.max_side:
                raise self.fail(f"has more than {self.max_side} rows, the most edge-infer reads", row=len(m.row_parts) + 1)
            self.row_text, self.row_len = [], 0
            cols = m.columns if m.columns is not None else self.max_side
            # Room for the codes, spaces between them and indentation; more is not a row.
            self.row_limit = cols * 6 + 4096

    def _device(self, m: _MapBuilder, raw: dict[str, str]) -> None:
        attrs = _plain(raw)
        if m.device:
            raise self.fail("has more than one <Device>")
        m.device = True
        bt = _attr(attrs, "bintype")
        if bt is None:
            raise self.fail("its <Device> has no BinType (ASCII, Decimal, HexaDecimal or Integer2)")
        try:
            m.bin_type = bin_type_key(bt)
        except InputError as exc:
            raise self.fail(str(exc)) from None
        null = _attr(attrs, "nullbin")
        if null is not None and null != "":
            m.null = self._code(m, null, "NullBin")
        for attr in ("Rows", "Columns"):
            value = _attr(attrs, attr.lower())
            if value is None:
                continue
            if not (value.strip().isascii() and value.strip().isdigit()) or int(value) < 1:
                raise self.fail(f"{attr}={value!r} is not a positive whole number")
            if int(value) > self.max_side:
                raise self.fail(f"{attr}={value} is more than {self.max_side}, the most edge-infer reads")
            setattr(m, attr.lower(), int(value))
        m.orientation = _attr(attrs, "orientation")
        m.origin = _attr(attrs, "originlocation")

    def _code(self, m: _MapBuilder, text: str, what: str) -> int:
        try:
            return parse_code(text, m.bin_type or "ascii")
        except InputError as exc:
            raise self.fail(f"{what}: {exc}") from None

    def _bin(self, m: _MapBuilder, raw: dict[str, str]) -> None:
        attrs = _plain(raw)
        code_text = _attr(attrs, "bincode")
        if code_text is None:
            raise self.fail("has a <Bin> without a BinCode")
        code = self._code(m, code_text, "BinCode")
        if code in m.bins:
            raise self.fail(f"declares bin {code_text!r} twice")
        quality = _attr(attrs, "binquality")
        count_text = _attr(attrs, "bincount")
        count = None
        if count_text is not None and count_text.strip() != "":
            if not (count_text.strip().isascii() and count_text.strip().isdigit()):
                raise self.fail(f"bin {code_text!r} has BinCount={count_text!r}, not a whole number")
            count = int(count_text)
        m.bins[code] = (quality.strip().lower() if quality else None, count, code_text)

    def _text(self, data: str) -> None:
        if self.row_text is None:
            return
        self.row_len += len(data)
        if self.row_len > self.row_limit:
            raise self.fail(f"a <Row> of more than {self.row_limit} characters", row=len(self.map.row_parts) + 1)
        self.row_text.append(data)

    def _end(self, name: str) -> None:
        tag = self.stack.pop()
        m = self.map
        if tag == "row" and self.row_text is not None and m is not None:
            text, self.row_text = "".join(self.row_text), None
            self._row(m, text)
        elif tag == "map" and m is not None:
            self.ready.append(self._finish(m))
            self.map = None

    def _row(self, m: _MapBuilder, text: str) -> None:
        """Check one row's length and keep its codes; they become numbers when the map ends."""
        r = len(m.row_parts) + 1
        bt = m.bin_type
        if bt == "ascii":
            # Taken as is when it has exactly Columns characters (a space may
            # be a code); otherwise indentation and line breaks are dropped.
            if m.columns is None or len(text) != m.columns:
                text = text.strip()
            part, n = text, len(text)
        elif bt == "decimal":
            if not _DECIMAL_ROW.fullmatch(text) or _LONG_NUMBER.search(text):
                bad = next(t for t in text.split() if not (t.isascii() and t.isdigit() and len(t) <= 9))
                raise self.fail(f"{bad[:20]!r} is not a Decimal bin code (up to 9 digits)", row=r)
            part = text.split()
            n = len(part)
        else:
            width = 1 if bt == "hex" else 2  # bytes per code
            try:
                part = bytes.fromhex(text)
            except ValueError:
                raise self.fail(f"is not {BIN_TYPES[bt]} codes ({2 * width} hex digits each)", row=r) from None
            if len(part) % width:
                raise self.fail(f"holds an odd number of hex digits for {BIN_TYPES[bt]} codes", row=r)
            n = len(part) // width
        if m.columns is None:
            if n == 0:
                raise self.fail("an empty <Row>", row=r)
            if n > self.max_side:
                raise self.fail(f"{n} dies in a row, more than {self.max_side}", row=r)
            m.columns = n
        elif n != m.columns:
            raise self.fail(f"{n} dies where its Columns={m.columns}", row=r)
        m.row_parts.append(part)

    def _keys(self, m: _MapBuilder) -> np.ndarray:
        """All rows' codes as integers (Rows, Columns)."""
        bt, parts = m.bin_type, m.row_parts
        shape = (len(parts), m.columns)
        if bt == "ascii":
            return np.frombuffer("".join(parts).encode("utf-32-le"), dtype="<u4").astype(np.int64).reshape(shape)
        if bt == "decimal":
            return np.array([t for row in parts for t in row]).astype(np.int64).reshape(shape)
        dtype = ">u1" if bt == "hex" else ">u2"
        return np.frombuffer(b"".join(parts), dtype=dtype).astype(np.int64).reshape(shape)

    def _explicit_keys(self, bin_type: str) -> dict[int, int]:
        if bin_type not in self._explicit:
            keys: dict[int, int] = {}
            for code, state in self.bin_map.items():
                try:
                    keys[parse_code(code, bin_type)] = state
                except InputError as exc:
                    raise G85Error(f"{self.where}: bin mapping {code!r} does not fit BinType {BIN_TYPES[bin_type]}: {exc}") from None
            self._explicit[bin_type] = keys
        return self._explicit[bin_type]

    def _finish(self, m: _MapBuilder) -> G85Map:
        if not m.device:
            raise self.fail("has no <Device> (which gives BinType, NullBin, Rows and Columns)")
        if not m.data:
            raise self.fail("has no <Data>, so no dies")
        if not m.row_parts:
            raise self.fail("has a <Data> without any <Row>")
        if m.rows is not None and len(m.row_parts) != m.rows:
            raise self.fail(f"has {len(m.row_parts)} <Row>s but its Rows={m.rows}")
        bt = m.bin_type or "ascii"
        keys = self._keys(m)
        m.row_parts = []
        top = int(keys.max())
        # Codes are small integers (ASCII characters, 0..65535): counting by
        # bincount and mapping by a lookup table is linear; np.unique sorts.
        lut = None
        if top < LUT_LIMIT:
            all_counts = np.bincount(keys.ravel(), minlength=top + 1)
            uniq = np.flatnonzero(all_counts)
            counts = all_counts[uniq]
            lut = np.zeros(top + 1, dtype=np.uint8)
        else:
            uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        explicit = self._explicit_keys(bt)
        state_of = np.empty(uniq.size, dtype=np.uint8)
        for i, key in enumerate(uniq.tolist()):
            state = explicit.get(key)
            if state is None and key == m.null:
                state = BOUNDARY
            if state is None:
                declared = m.bins.get(key)
                if declared is None:
                    r, c = divmod(int(np.flatnonzero(keys.ravel() == key)[0]), keys.shape[1])
                    raise self.fail(
                        f"column {c + 1}: bin code {format_code(key, bt)!r} is neither the NullBin nor one of its "
                        f"<Bin>s ({', '.join(v[2] for v in m.bins.values()) or 'none declared'}); "
                        "declare it, or say what it means with --bin-map CODE=STATE",
                        row=r + 1,
                    )
                quality = declared[0]
                if quality == "pass":
                    state = NORMAL
                elif quality == "fail":
                    state = DEFECT
                else:
                    raise self.fail(
                        f"bin {declared[2]!r} has BinQuality={quality!r}, neither Pass nor Fail; "
                        f"say what it means with --bin-map {declared[2]}=boundary|normal|defect"
                    )
            state_of[i] = state
        found = dict(zip(uniq.tolist(), counts.tolist()))
        for key, (_, count, code_text) in m.bins.items():
            if count is not None and count != found.get(key, 0):
                raise self.fail(f"bin {code_text!r} declares BinCount={count} but {found.get(key, 0)} dies carry it")
        label = self._label(m)
        if lut is not None:
            lut[uniq] = state_of
            states = lut[keys].astype(np.uint8)
        else:
            states = state_of[inverse.reshape(-1)].reshape(keys.shape)
        return G85Map(
            states=states,
            label=label,
            map_id=m.map_id,
            index=m.index,
            bin_type=bt,
            orientation=m.orientation,
            origin=m.origin,
            bin_counts={format_code(k, bt): v for k, v in found.items()},
        )

    def _label(self, m: _MapBuilder) -> Optional[int]:
        index: Optional[int] = None
        if m.class_index is not None:
            t = m.class_index.strip()
            if not (t.isascii() and t.isdigit()) or int(t) >= len(self.classes):
                raise self.fail(f"ei:ClassIndex={m.class_index!r} is not a class index 0..{len(self.classes) - 1}")
            index = int(t)
        if m.class_name is not None:
            lowered = [c.lower() for c in self.classes]
            name = m.class_name.strip().lower()
            if name not in lowered:
                raise self.fail(f"ei:Class={m.class_name!r} is not a known class ({', '.join(self.classes)})")
            if index is None:
                index = lowered.index(name)
            elif lowered[index] != name:
                raise self.fail(
                    f"ei:ClassIndex={index} is {self.classes[index]} here but the map says ei:Class={m.class_name!r}; "
                    "it was written with another class order"
                )
        return index

    def feed(self, chunk: bytes, final: bool = False) -> None:
        try:
            self.parser.Parse(chunk, final)
        except expat.ExpatError as exc:
            msg = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
            raise G85Error(f"{self.where} is not well-formed XML: {msg} (line {exc.lineno}, column {exc.offset + 1})") from None
        if final:
            if not self.saw_root:
                raise G85Error(f"{self.where} is empty; no <Maps> found")
            if self.n_maps == 0:
                raise G85Error(f"{self.where} holds no <Map>")


def _open(source: Union[PathLike, IO[bytes]]) -> tuple[IO[bytes], str, bool]:
    if hasattr(source, "read"):
        return source, getattr(source, "name", "G85 stream"), False  # type: ignore[return-value]
    p = Path(source)
    if not p.exists():
        raise G85Error(f"{p}: no such file")
    if p.is_dir():
        raise G85Error(f"{p} is a folder, not a G85 file")
    try:
        return open(p, "rb"), str(p), True
    except OSError as exc:
        raise G85Error(f"{p}: cannot read ({exc.strerror or exc})") from None


def iter_g85(
    source: Union[PathLike, IO[bytes]],
    *,
    bin_map: Union[None, str, Mapping[str, Any]] = None,
    classes: tuple[str, ...] = CLASS_NAMES,
    max_side: int = MAX_SIDE,
    digest: Optional[Any] = None,
    progress: Optional[Any] = None,
) -> Iterator[G85Map]:
    """Yield the maps of a G85 XML file (a path or a binary file) one by one, as read.

    Dies map to states by ``BinQuality`` (Pass → normal, Fail → defect,
    NullBin → boundary); ``bin_map`` (``"7=defect,99=boundary"`` or a dict)
    overrides that for the codes it names. Maps keep their own size.
    ``digest``: a hashlib object fed every byte read (the file's sha256 for free).
    ``progress(bytes_read, file_size)`` is called after every chunk of a file.
    Raises :class:`G85Error` at the first problem, naming the map and row.
    """
    reader = _Reader("", parse_bin_map(bin_map), tuple(classes), max_side)
    fh, where, owned = _open(source)
    reader.where = where
    size, seen = 0, 0
    if owned:
        with contextlib.suppress(OSError):
            size = Path(where).stat().st_size
    try:
        while True:
            try:
                chunk = fh.read(CHUNK)
            except OSError as exc:
                raise G85Error(f"{where}: cannot read ({exc.strerror or exc})") from None
            if digest is not None:
                digest.update(chunk)
            reader.feed(chunk, final=not chunk)
            seen += len(chunk)
            if progress is not None and size:
                progress(seen, size)
            if reader.ready:
                done, reader.ready = reader.ready, []
                yield from done
            if not chunk:
                return
    finally:
        if owned:
            fh.close()


def looks_like_g85(path: PathLike) -> bool:
    """True for a ``.xml``/``.g85`` file, or a file whose first bytes look like XML."""
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


@dataclass(frozen=True)
class G85Contents:
    """All maps of a G85 file as die states (26×26), their labels and the file's sha256."""

    states: np.ndarray
    labels: Optional[np.ndarray]
    sha256: str
    map_ids: list


def _resize_note(sizes: dict[tuple[int, int], int]) -> None:
    if sizes:
        n = sum(sizes.values())
        parts = ", ".join(f"{h}×{w}: {k}" for (h, w), k in sorted(sizes.items()))
        warnings.warn(
            f"resized {n} map(s) ({parts}) to {MAP_SIZE}×{MAP_SIZE} dies "
            "(nearest neighbour on die states, so no state is invented)",
            ResizeNote,
            stacklevel=3,
        )


class _Collector:
    """Turns :class:`G85Map` s into 26×26 states + labels, checking labels are all there or all absent."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.sizes: dict[tuple[int, int], int] = {}
        self.labels: list[Optional[int]] = []

    def states(self, m: G85Map) -> np.ndarray:
        h, w = m.states.shape
        if (h, w) != (MAP_SIZE, MAP_SIZE):
            if min(h, w) < 2:
                raise G85Error(f"{self.where}: map {m.map_id!r} is {h}×{w} dies; too small to be a wafer")
            self.sizes[(h, w)] = self.sizes.get((h, w), 0) + 1
            return resize_states(m.states)
        return m.states

    def label(self, m: G85Map) -> None:
        if not self.labels:
            self.first_id = m.map_id
        elif (self.labels[0] is None) != (m.label is None):
            lacking, having = (m.map_id, self.first_id) if m.label is None else (self.first_id, m.map_id)
            raise G85Error(
                f"{self.where}: map {lacking!r} carries no class (ei:ClassIndex) while map {having!r} does; "
                "label every map or none"
            )
        self.labels.append(m.label)

    def label_array(self) -> Optional[np.ndarray]:
        if not self.labels or self.labels[0] is None:
            return None
        return np.asarray(self.labels, dtype=np.int64).reshape(-1, 1)


def read_g85(
    source: PathLike,
    *,
    bin_map: Union[None, str, Mapping[str, Any]] = None,
    classes: tuple[str, ...] = CLASS_NAMES,
) -> G85Contents:
    """All maps of a G85 file, brought to 26×26 die states (one :class:`ResizeNote` for the file)."""
    digest = hashlib.sha256()
    col = _Collector(str(source))
    states, ids = [], []
    for m in iter_g85(source, bin_map=bin_map, classes=classes, digest=digest):
        states.append(col.states(m))
        col.label(m)
        ids.append(m.map_id)
    _resize_note(col.sizes)
    return G85Contents(np.stack(states).astype(np.uint8), col.label_array(), digest.hexdigest(), ids)


def load_g85_dataset(
    source: PathLike,
    labels: Optional[PathLike] = None,
    *,
    require_labels: bool = False,
    bin_map: Union[None, str, Mapping[str, Any]] = None,
) -> Any:
    """A G85 file as an :class:`edge_infer.io.Dataset` (what :func:`edge_infer.io.load_dataset` returns).

    Labels come from ``labels`` (a ``.npy``) when given, else from the maps'
    ``ei:ClassIndex``; ``sha256`` is the file's.
    """
    from ..io import Dataset, load_npy
    from ..wafer import to_onehot

    got = read_g85(source, bin_map=bin_map)
    lab, lab_sha = got.labels, (got.sha256 if got.labels is not None else None)
    if labels is not None:
        lab = as_labels(load_npy(labels), got.states.shape[0], name=f"labels for {source}")
        lab_sha = hashlib.sha256(Path(labels).read_bytes()).hexdigest()
    if lab is None and require_labels:
        raise G85Error(f"{source}: its maps carry no class (ei:ClassIndex); give a labels .npy (--labels)")
    return Dataset(maps=to_onehot(got.states), labels=lab, source=str(source), sha256=got.sha256, labels_sha256=lab_sha)


class G85Source:
    """A G85 file as a source of map blocks: ``where``, ``count``, ``map_bytes``,
    ``sha256``, ``labels`` and ``raw_blocks(rows)``, for readers that need the
    count and labels before the maps (streamed ``.npy`` readers have them from
    the header; a G85 file has them only once read).

    So opening it reads the whole file once, keeping only labels (8 bytes a
    map): every map is validated before any is handed on, and memory stays
    one map. ``raw_blocks`` reads it again, ``rows`` maps at a time, as die
    states at the file's size (a list when sizes differ).
    """

    def __init__(
        self,
        source: PathLike,
        *,
        bin_map: Union[None, str, Mapping[str, Any]] = None,
        classes: tuple[str, ...] = CLASS_NAMES,
    ) -> None:
        self.path = Path(source)
        self.where = str(source)
        self._options = dict(bin_map=bin_map, classes=tuple(classes))
        col = _Collector(self.where)
        digest = hashlib.sha256()
        largest = 0
        for m in iter_g85(self.path, digest=digest, **self._options):
            col.label(m)
            largest = max(largest, m.states.size)
        self.count = len(col.labels)
        #: Bytes of the largest map as read (uint8 die states).
        self.map_bytes = largest
        self.labels: Optional[np.ndarray] = col.label_array()
        self.sha256: Optional[str] = digest.hexdigest()

    def raw_blocks(self, rows: int, *, hash: bool = False) -> Iterator[Any]:
        """Blocks of up to ``rows`` maps' die states; ``hash`` is accepted for the
        interface (the sha256 is known from opening)."""
        block: list[np.ndarray] = []
        for m in iter_g85(self.path, **self._options):
            block.append(m.states)
            if len(block) == rows:
                yield _stack_if_same(block)
                block = []
        if block:
            yield _stack_if_same(block)


def _stack_if_same(block: list[np.ndarray]) -> Any:
    return np.stack(block) if len({b.shape for b in block}) == 1 else block


def g85_to_npy(
    source: PathLike,
    data_path: Path,
    *,
    bin_map: Union[None, str, Mapping[str, Any]] = None,
    classes: tuple[str, ...] = CLASS_NAMES,
    progress: Optional[Any] = None,
) -> tuple[int, Optional[np.ndarray]]:
    """Stream a G85 file's maps into ``data_path`` as one-hot float32 ``.npy``
    (the course ``data.npy``), a block of maps in memory at a time.
    ``progress(bytes_read, file_size)`` as in :func:`iter_g85`.

    The map count is known only at the end, so the header is written for 0
    maps and rewritten with the count; it is 128 bytes for every count, so
    the rewrite never moves the data. Returns (maps written, labels or None).
    """
    from numpy.lib import format as npy_format

    from ..wafer import to_onehot

    def header(n: int) -> bytes:
        buf = io.BytesIO()
        npy_format.write_array_header_1_0(
            buf, {"descr": npy_format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (n, MAP_SIZE, MAP_SIZE, 3)}
        )
        return buf.getvalue()

    col = _Collector(str(source))
    n = 0
    first = header(0)
    block: list[np.ndarray] = []
    with open(data_path, "wb") as fh:
        fh.write(first)
        for m in iter_g85(source, bin_map=bin_map, classes=classes, progress=progress):
            col.label(m)
            block.append(col.states(m))
            n += 1
            if len(block) == WRITE_BLOCK:
                fh.write(to_onehot(np.stack(block)).tobytes())
                block = []
        if block:
            fh.write(to_onehot(np.stack(block)).tobytes())
        final = header(n)
        if len(final) != len(first):  # cannot happen for counts below 10**19; never corrupt silently
            raise G85Error(f"{source}: too many maps ({n}) for one .npy header")
        fh.seek(0)
        fh.write(final)
    _resize_note(col.sizes)
    return n, col.label_array()

