"""SEMI G85 bin types and codes, as files and users give them and as the writer writes them; the file error."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any, Optional, Union

from ..errors import DataFileError, InputError
from ..wafer import BOUNDARY, DEFECT, NORMAL


FORMAT_REVISION = "SEMI G85 0703"  # the standard's current edition
SEMI_NS = "http://www.semi.org"
EI_NS = "urn:edge-infer:g85"  # edge-infer's own attributes (the class label), which other G85 readers ignore

#: Bin types by the lower-case name users and files give; the value is what the writer puts in ``BinType``.
BIN_TYPES = {"ascii": "ASCII", "decimal": "Decimal", "hex": "HexaDecimal", "integer2": "Integer2"}
_BIN_TYPE_ALIASES = {"hexadecimal": "hex", "hexa": "hex", "integer": "integer2", "int2": "integer2"}
#: Writer defaults per bin type: (NullBin, pass bin, fail bin), so Decimal and hex codes equal the die states.
DEFAULT_BINS = {"ascii": (".", "1", "X"), "decimal": ("000", "001", "002"), "hex": ("00", "01", "02"),
                "integer2": ("0000", "0001", "0002")}
_DIGITS = {"decimal": (9, string.digits), "hex": (2, string.hexdigits), "integer2": (4, string.hexdigits)}
_FORMATS = {"ascii": "{:c}", "decimal": "{:03d}", "hex": "{:02X}", "integer2": "{:04X}"}  # as the writer writes
_LARGEST = {"ascii": 0x7E, "decimal": 255, "hex": 0xFF, "integer2": 0xFFFF}  # codes the writer writes

_STATE_WORDS = {
    "boundary": BOUNDARY, "off": BOUNDARY, "off-wafer": BOUNDARY, "null": BOUNDARY, "0": BOUNDARY,
    "normal": NORMAL, "pass": NORMAL, "good": NORMAL, "1": NORMAL,
    "defect": DEFECT, "fail": DEFECT, "bad": DEFECT, "2": DEFECT,
}


class G85Error(DataFileError):
    """A G85 file that is malformed, unsafe, or not a wafer map edge-infer can read."""


def bin_type_key(name: str) -> str:
    """The canonical key (``ascii``, ``decimal``, ``hex``, ``integer2``) of a ``BinType`` value, any case."""
    key = _BIN_TYPE_ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in BIN_TYPES:
        raise InputError(f"unknown BinType {name!r}; G85 bin types are ASCII, Decimal, HexaDecimal (Hex), Integer2")
    return key


def parse_code(text: str, bin_type: str) -> int:
    """A bin code as written to the integer compared: ASCII by character, the others by value (``7`` = ``007``)."""
    if bin_type == "ascii":
        if len(text) != 1:
            raise InputError(f"ASCII bin code {text!r} must be exactly one character")
        return ord(text)
    width, digits = _DIGITS[bin_type]
    t = text.strip()
    if not (0 < len(t) <= width and all(c in digits for c in t)):
        kind = "" if bin_type == "decimal" else "hex "
        raise InputError(f"{BIN_TYPES[bin_type]} bin code {text!r} must be 1 to {width} {kind}digits")
    return int(t, 10 if bin_type == "decimal" else 16)


def format_code(key: int, bin_type: str) -> str:
    """The inverse of :func:`parse_code`, in the form the writer uses."""
    return _FORMATS[bin_type].format(key)


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


def check_bins(bin_type: str = "ascii", null_bin: Optional[str] = None, pass_bin: Optional[str] = None,
               fail_bin: Optional[str] = None) -> tuple[str, tuple[str, str, str]]:
    """The writer's bin type key and its (NullBin, pass, fail) codes as written; :class:`InputError` if unusable."""
    key = bin_type_key(bin_type)
    given = [code or default for code, default in zip((null_bin, pass_bin, fail_bin), DEFAULT_BINS[key])]
    keys = []
    for what, code in zip(("NullBin", "pass bin", "fail bin"), given):
        if key == "ascii" and (len(code) != 1 or not code.isprintable() or code.isspace() or code in "]<&\"'"):
            raise InputError(f"{what} {code!r}: an ASCII bin code is one printable character other than a space "
                             "and ] < & \" '")
        keys.append(parse_code(code, key))
        if keys[-1] > _LARGEST[key]:
            raise InputError(f"{what} {code!r} is beyond {BIN_TYPES[key]}'s range "
                             f"(at most {format_code(_LARGEST[key], key)})")
    if len(set(keys)) != 3:
        raise InputError("NullBin, pass bin and fail bin must be three different codes, "
                         f"not {', '.join(map(repr, given))}")
    return key, tuple(format_code(k, key) for k in keys)  # type: ignore[return-value]
