"""The XML layer of the G85 reader: expat over untrusted bytes, every hostile shape refused, each ``<Map>``'s
elements handed to a :class:`~.build.MapBuilder`."""

from __future__ import annotations

from typing import Any, Optional
from xml.parsers import expat

from .build import G85Map, MapBuilder
from .codes import G85Error

#: The most characters of one tag's attributes, a comment, text outside a ``<Row>``, or an unfinished tag.
FIELD_LIMIT = 64 * 1024
CHUNK = 1 << 16  # bytes read at a time
KIB = f"{FIELD_LIMIT // 1024} KiB"


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]  # without the namespace


class Parser:
    """Feeds bytes to expat, refusing entities, attribute defaults and oversized fields the moment they appear;
    :meth:`feed` returns the maps completed so far."""

    def __init__(self, where: str, bin_map: dict[str, int], classes: tuple[str, ...], max_side: int) -> None:
        self.where, self.bin_map, self.classes, self.max_side = where, bin_map, classes, max_side
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
        p.EntityDeclHandler = p.UnparsedEntityDeclHandler = self._refuse_entity
        p.ExternalEntityRefHandler = self._refuse_external
        p.AttlistDeclHandler = self._refuse_attlist
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

    def _refuse_entity(self, name: str, *_: Any) -> None:
        raise G85Error(f"{self.where} declares the XML entity {name!r} (line {self.p.CurrentLineNumber}); "
                       "entities are never expanded or fetched, so the file is refused (G85 maps need none)")

    def _refuse_external(self, context: Any, base: Any, system_id: Any, *_: Any) -> int:
        raise G85Error(f"{self.where} refers to an external entity ({system_id}); nothing outside the file is fetched")

    def _refuse_attlist(self, element: str, *_: Any) -> None:
        raise G85Error(f"{self.where} declares attributes for <{element}> in its DOCTYPE (line "
                       f"{self.p.CurrentLineNumber}); declared defaults would add to every element, so the file is "
                       "refused (G85 maps need none)")

    def _comment(self, data: str) -> None:
        if len(data) > FIELD_LIMIT:
            raise self.fail(f"a comment longer than {KIB}, the most edge-infer reads outside a <Row>")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if attrs and sum(map(len, attrs.values())) > FIELD_LIMIT:
            longest = max(attrs, key=lambda k: len(attrs[k]))
            raise self.fail(f"<{_local(name)}> has attributes longer than {KIB} ({_local(longest)} alone is "
                            f"{len(attrs[longest]):,} characters), the most edge-infer reads outside a <Row>")
        tag, parent, m = _local(name).lower(), self.stack[-1] if self.stack else None, self.map
        self.stack.append(tag)
        self.loose = 0
        if parent is None and tag not in ("maps", "map"):
            raise G85Error(f"{self.where}: the document's root is <{_local(name)}>, not <Maps> or <Map>; "
                           "not a SEMI G85 map file")
        if tag == "map":
            if m is not None:
                raise self.fail("a <Map> inside another <Map>")
            self.map = MapBuilder(self.n_maps, attrs, self.fail, self.max_side)
            self.n_maps += 1
        elif m is None:
            return
        elif tag == "row" and parent == "data":
            self.row, self.row_len, self.row_limit = [], 0, m.start_row()
        elif tag == "device":
            m.set_device(attrs)
        elif tag == "bin" and parent == "device":
            m.add_bin(attrs)

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
        tag, m = self.stack.pop(), self.map
        self.loose = 0
        if m is not None and tag == "row" and self.row is not None:
            m.add_row("".join(self.row))
            self.row = None
        elif m is not None and tag == "map":
            self.ready.append(m.finish(self.bin_map, self.classes))
            self.map = None

    def feed(self, chunk: bytes) -> list[G85Map]:
        """Parse the next bytes (none: the file ends here); the maps completed by them."""
        try:
            self.p.Parse(chunk, not chunk)
        except expat.ExpatError as exc:
            msg = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
            raise G85Error(f"{self.where} is not well-formed XML: {msg} (line {exc.lineno}, column "
                           f"{exc.offset + 1})") from None
        self.fed += len(chunk)
        # expat hands a tag over only when complete: stop an unfinished one (from CurrentByteIndex) growing unbounded.
        if self.fed - max(self.p.CurrentByteIndex, 0) > FIELD_LIMIT:
            raise self.fail(f"a tag, comment or declaration runs on for more than {KIB}, the most edge-infer reads "
                            "outside a <Row>")
        if not chunk and self.n_maps == 0:
            raise G85Error(f"{self.where} holds no <Map>")
        done, self.ready = self.ready, []
        return done
