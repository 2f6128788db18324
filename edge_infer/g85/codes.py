"""SEMI G85's vocabulary: namespaces, bin types, the states users give codes (``--bin-map``); the file error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from ..errors import DataFileError, InputError
from ..wafer import BOUNDARY, DEFECT, NORMAL


FORMAT_REVISION = "SEMI G85 0703"  # the standard's current edition
SEMI_NS = "http://www.semi.org"
EI_NS = "urn:edge-infer:g85"  # edge-infer's own attributes (the class label), which other G85 readers ignore

#: Bin types by their lower-case key (``G85Map.bin_type``); the value is the standard's ``BinType``.
BIN_TYPES = {"ascii": "ASCII", "decimal": "Decimal", "hex": "HexaDecimal", "integer2": "Integer2"}

_STATE_WORDS = {
    "boundary": BOUNDARY, "off": BOUNDARY, "off-wafer": BOUNDARY, "null": BOUNDARY, "0": BOUNDARY,
    "normal": NORMAL, "pass": NORMAL, "good": NORMAL, "1": NORMAL,
    "defect": DEFECT, "fail": DEFECT, "bad": DEFECT, "2": DEFECT,
}


class G85Error(DataFileError):
    """A G85 file that is malformed, unsafe, or not a wafer map edge-infer can read."""


def parse_bin_map(spec: Union[None, str, Mapping[str, Any]]) -> dict[str, int]:
    """``"1=normal,X=defect,99=boundary"`` (or a dict) to ``{code: state}``; codes are read per map's BinType."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        pairs = [p.rsplit("=", 1) for p in spec.split(",") if p.strip()]
        for pair in pairs:
            if len(pair) == 1:
                raise InputError(f"bin mapping {pair[0].strip()!r} is not CODE=STATE (e.g. 7=defect)")
        spec = {(code.strip() or code): state for code, state in pairs}  # " " stays: a space is an ASCII code
    out: dict[str, int] = {}
    for code, state in spec.items():
        word = str(state).strip().lower()
        if word not in _STATE_WORDS:
            raise InputError(f"bin mapping {code}={state}: state must be boundary, normal or defect (or 0, 1, 2)")
        out[str(code)] = _STATE_WORDS[word]
    return out
