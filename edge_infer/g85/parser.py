"""The XML layer of the G85 reader: expat over untrusted bytes, every hostile shape refused, elements and text handed on."""

from __future__ import annotations

from typing import Any
from xml.parsers import expat

from .codes import G85Error

#: The most characters of one tag's attributes, a comment, text outside a ``<Row>``, or an unfinished tag.
FIELD_LIMIT = 64 * 1024
CHUNK = 1 << 16  # bytes read at a time
KIB = f"{FIELD_LIMIT // 1024} KiB"


def local(name: str) -> str:
    """An element or attribute name without its namespace."""
    return name.rsplit("}", 1)[-1]


class Parser:
    """Feeds bytes to expat, refusing entities, attribute defaults and oversized fields the moment they appear;
    the ``handler`` (:class:`~edge_infer.g85.build.MapBuilder`) gets the elements and text and makes the errors."""

    def __init__(self, where: str, handler: Any) -> None:
        self.where, self.handler, self.fed = where, handler, 0
        p = expat.ParserCreate(namespace_separator="}")
        # An entity must be declared before it can be expanded: refusing declarations refuses expansion.
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.EntityDeclHandler = lambda name, *_: self._refuse_entity(name)
        p.UnparsedEntityDeclHandler = lambda name, *_: self._refuse_entity(name)
        p.ExternalEntityRefHandler = self._refuse_external
        p.AttlistDeclHandler = self._refuse_attlist
        p.CommentHandler = self._comment
        p.StartElementHandler = self._start
        p.EndElementHandler = handler.end
        p.CharacterDataHandler = handler.text
        p.buffer_text = True
        handler.line = lambda: p.CurrentLineNumber
        self.p = p

    def _refuse_entity(self, name: str) -> None:
        raise G85Error(f"{self.where} declares the XML entity {name!r} (line {self.p.CurrentLineNumber}); "
                       "entities are never expanded or fetched, so the file is refused (G85 maps need none)")

    def _refuse_external(self, context: Any, base: Any, system_id: Any, *_: Any) -> int:
        raise G85Error(f"{self.where} refers to an external entity ({system_id}); nothing outside the file is fetched")

    def _refuse_attlist(self, element: str, name: str, *_: Any) -> None:
        line = self.p.CurrentLineNumber
        raise G85Error(f"{self.where} declares attributes for <{element}> in its DOCTYPE (line {line}); declared "
                       "defaults would add to every element, so the file is refused (G85 maps need none)")

    def _comment(self, data: str) -> None:
        if len(data) > FIELD_LIMIT:
            raise self.handler.fail(f"a comment longer than {KIB}, the most edge-infer reads outside a <Row>")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if attrs and sum(map(len, attrs.values())) > FIELD_LIMIT:
            longest = max(attrs, key=lambda k: len(attrs[k]))
            raise self.handler.fail(f"<{local(name)}> has attributes longer than {KIB} ({local(longest)} alone is "
                                    f"{len(attrs[longest]):,} characters), the most edge-infer reads outside a <Row>")
        self.handler.start(name, attrs)

    def feed(self, chunk: bytes, final: bool = False) -> None:
        """Parse the next bytes (``final``: the file ends here)."""
        try:
            self.p.Parse(chunk, final)
        except expat.ExpatError as exc:
            msg = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
            raise G85Error(f"{self.where} is not well-formed XML: {msg} (line {exc.lineno}, column {exc.offset + 1})") from None
        self.fed += len(chunk)
        # expat hands a tag over only when complete: stop an unfinished one (from CurrentByteIndex) growing unbounded.
        if self.fed - max(self.p.CurrentByteIndex, 0) > FIELD_LIMIT:
            raise self.handler.fail(f"a tag, comment or declaration runs on for more than {KIB}, the most edge-infer reads outside a <Row>")
