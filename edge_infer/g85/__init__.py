"""SEMI G85 XML wafer maps in and out: the format fab tools exchange maps in.

Reading (:func:`iter_g85`) streams a file with the standard library's expat
parser, one ``<Map>`` at a time, so memory holds one map however big the
file is. The file is untrusted: any entity declaration (the "billion laughs"
and external-entity attacks both need one) is refused as soon as the parser
meets it, before anything is expanded, and nothing outside the file is ever
fetched. Every problem becomes one :class:`G85Error` naming the file, the
map and, where it applies, the row.

Writing (:class:`G85Writer`, :func:`save_g85`) streams maps into one
``<Maps>`` document, through :func:`edge_infer.io.atomic_path`, so a failed
or interrupted write leaves nothing. Off-wafer dies are the ``NullBin``,
normal dies a ``Pass`` bin, defects a ``Fail`` bin, and each map's class
travels in the attributes ``ei:ClassIndex`` / ``ei:Class`` (namespace
:data:`EI_NS`), so npy → G85 → npy gives back the same maps and labels.

The mapping between G85 and die states, and the orientation rule, are
documented in ``docs/g85.md``. The package: :mod:`.codes` (bin types and
codes, the options users give, :class:`G85Error`), :mod:`.reader`,
:mod:`.writer`; the names below are the public API.
"""

from .codes import (
    BIN_TYPES,
    DEFAULT_BINS,
    EI_NS,
    FORMAT_REVISION,
    SEMI_NS,
    G85Error,
    bin_type_key,
    check_bins,
    format_code,
    parse_bin_map,
    parse_code,
)
from .reader import MAX_SIDE, G85Contents, G85Map, G85Source, g85_to_npy, iter_g85, load_g85_dataset, looks_like_g85, read_g85
from .writer import G85Writer, g85_writer, open_g85, save_g85

__all__ = [
    "BIN_TYPES", "DEFAULT_BINS", "EI_NS", "FORMAT_REVISION", "MAX_SIDE", "SEMI_NS",
    "G85Contents", "G85Error", "G85Map", "G85Source", "G85Writer",
    "bin_type_key", "check_bins", "format_code", "g85_to_npy", "g85_writer", "iter_g85",
    "load_g85_dataset", "looks_like_g85", "open_g85", "parse_bin_map", "parse_code", "read_g85", "save_g85",
]
