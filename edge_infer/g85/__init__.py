"""SEMI G85 XML wafer maps in and out with the standard library alone; untrusted files are streamed one ``<Map>``
at a time and every problem is one :class:`G85Error` naming file, map, row and line (``docs/g85.md``)."""

from .codes import BIN_TYPES, EI_NS, FORMAT_REVISION, SEMI_NS, G85Error, parse_bin_map
from .reader import FIELD_LIMIT, MAX_SIDE, G85Map, G85Source, iter_g85, looks_like_g85
from .writer import G85Writer, open_g85, save_g85

__all__ = [
    "BIN_TYPES", "EI_NS", "FIELD_LIMIT", "FORMAT_REVISION", "MAX_SIDE", "SEMI_NS",
    "G85Error", "G85Map", "G85Source", "G85Writer",
    "iter_g85", "looks_like_g85", "open_g85", "parse_bin_map", "save_g85",
]
