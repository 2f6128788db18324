"""SEMI G85 XML in and out: round trips, files from other writers, malformed and hostile files."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import one_error_line as _one_error_line
from edge_infer.errors import InputError
from edge_infer.g85 import EI_NS, SEMI_NS, G85Error, G85Writer, iter_g85, save_g85
from edge_infer.io import load_dataset
from edge_infer.wafer import CLASS_NAMES, ResizeNote, resize_states, to_onehot


def _random_states(n: int, seed: int = 0) -> np.ndarray:
    """Disc-shaped wafers (off-wafer corners) with random normal/defect dies."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:26, :26]
    disc = (yy - 12.5) ** 2 + (xx - 12.5) ** 2 <= 13**2
    states = rng.choice([1, 2], size=(n, 26, 26), p=[0.8, 0.2]).astype(np.uint8)
    states[:, ~disc] = 0
    return states


# ---------------------------------------------------------------- round trips


def _recoded(text: str, bin_type: str) -> str:
    """The ASCII document save_g85 writes, as a writer of another bin type writes it (codes 0, 1, 2)."""
    name, width, sep = {"decimal": ("Decimal", 3, " "), "hex": ("HexaDecimal", 2, ""), "integer2": ("Integer2", 4, "")}[bin_type]
    code = {c: str(i).zfill(width) for i, c in enumerate(".1X")}
    text = text.replace('BinType="ASCII" NullBin="."', f'BinType="{name}" NullBin="{code["."]}"')
    text = text.replace('BinCode="1"', f'BinCode="{code["1"]}"').replace('BinCode="X"', f'BinCode="{code["X"]}"')
    return re.sub(r"CDATA\[([.1X]*)\]", lambda m: "CDATA[" + sep.join(code[c] for c in m[1]) + "]", text)


@pytest.mark.parametrize("bin_type", ["ascii", "decimal", "hex", "integer2"])
def test_npy_g85_npy_is_exact_for_every_bin_type(tmp_path, bin_type):
    """The writer writes ASCII; the same maps in the other bin types read back exactly too."""
    states = _random_states(40, seed=1)
    labels = np.arange(40) % len(CLASS_NAMES)
    path = save_g85(tmp_path / "m.xml", to_onehot(states), labels)
    if bin_type != "ascii":
        path.write_text(_recoded(path.read_text(), bin_type))
    got = list(iter_g85(path))
    assert {m.bin_type for m in got} == {bin_type}
    np.testing.assert_array_equal(np.stack([m.states for m in got]), states)
    ds = load_dataset(path, require_labels=True)
    np.testing.assert_array_equal(ds.maps, to_onehot(states))
    np.testing.assert_array_equal(ds.labels[:, 0], labels)
    assert ds.maps.dtype == np.float32 and ds.labels.dtype == np.int64


def test_real_maps_round_trip_through_the_cli(run, tmp_path, wafer_data):
    g, back = tmp_path / "g", tmp_path / "back"
    code, out, err = run("convert", "--data", wafer_data.source, "--to", "g85", "--out", str(g))
    assert code == 0, err
    assert "1281" in out
    code, out, err = run("convert", "--data", str(g / "maps.xml"), "--to", "npy", "--out", str(back))
    assert code == 0, err
    maps, labels = np.load(back / "data.npy"), np.load(back / "label.npy")
    assert maps.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(maps, wafer_data.maps)
    np.testing.assert_array_equal(labels, wafer_data.labels)
    assert sorted(p.name for p in back.iterdir()) == ["data.npy", "label.npy"]


def test_output_is_g85_a_generic_xml_reader_accepts(tmp_path):
    """Read back with ElementTree (not edge-infer's reader): the structure and counts the standard asks for."""
    states = _random_states(5, seed=3)
    labels = np.array([0, 3, 8, 6, 1])
    path = save_g85(tmp_path / "m.xml", states, labels)
    root = ET.parse(path).getroot()
    ns = {"s": SEMI_NS}
    assert root.tag == "Maps"
    maps = root.findall("s:Map", ns)
    assert len(maps) == 5
    for i, m in enumerate(maps):
        assert m.get("FormatRevision") == "SEMI G85 0703" and m.get("SubstrateType") == "Wafer"
        assert m.get(f"{{{EI_NS}}}ClassIndex") == str(labels[i])
        assert m.get(f"{{{EI_NS}}}Class") == CLASS_NAMES[labels[i]]
        dev = m.find("s:Device", ns)
        assert (dev.get("Rows"), dev.get("Columns"), dev.get("BinType")) == ("26", "26", "ASCII")
        assert (dev.get("Orientation"), dev.get("OriginLocation")) == ("0", "2")
        rows = [r.text for r in dev.findall("s:Data/s:Row", ns)]
        assert len(rows) == 26 and all(len(r) == 26 for r in rows)
        grid = np.array([list(r) for r in rows])
        null = dev.get("NullBin")
        np.testing.assert_array_equal(grid == null, states[i] == 0)
        bins = {b.get("BinCode"): b for b in dev.findall("s:Bin", ns)}
        assert {b.get("BinQuality") for b in bins.values()} == {"Pass", "Fail"}
        for code, b in bins.items():
            assert int(b.get("BinCount")) == int((grid == code).sum())
            want = 1 if b.get("BinQuality") == "Pass" else 2
            np.testing.assert_array_equal(grid == code, states[i] == want)


def test_writer_streams_blocks_into_one_document(tmp_path):
    states = _random_states(10, seed=4)
    buf = io.BytesIO()
    w = G85Writer(buf)
    w.write(states[:4], np.zeros(4, int))
    w.write(states[4:], np.ones(6, int))
    w.close()
    w.close()  # idempotent
    got = list(iter_g85(io.BytesIO(buf.getvalue())))
    assert [m.label for m in got] == [0] * 4 + [1] * 6
    np.testing.assert_array_equal(np.stack([m.states for m in got]), states)
    assert [m.map_id for m in got][:2] == ["edge-infer-000001", "edge-infer-000002"]
    w2 = G85Writer(io.BytesIO())
    w2.write(states[:1], [0])
    with pytest.raises(InputError, match="labels for every block"):
        w2.write(states[1:2])


def test_a_lot_id_too_long_to_read_back_is_refused(run, tmp_path):
    with pytest.raises(InputError, match="at most 256"):
        G85Writer(io.BytesIO(), lot_id="L" * 300)
    code, _, err = run("convert", "--data", str(_npy_input(tmp_path)), "--lot-id", "L" * 300, "--out", str(tmp_path / "o"))
    assert code == 1 and "lot id of 300 characters; at most 256" in _one_error_line(err)
    assert not (tmp_path / "o").exists()


def _npy_input(tmp_path: Path) -> Path:
    p = tmp_path / "maps.npy"
    np.save(p, to_onehot(_random_states(2)))
    return p


# ---------------------------------------------------------------- files from other writers

PUBLISHED_SHAPE = """<?xml version="1.0" encoding="UTF-8"?>
<Maps>
  <Map xmlns="http://www.semi.org" SubstrateType="Wafer" SubstrateId="123456705F2" FormatRevision="SEMI G85 0703">
    <Device ProductId="PRODUCT" LotId="LOT01" CreateDate="20030315123000000" SupplierName="Fab" WaferSize="200"
            DeviceSizeX="5000" DeviceSizeY="5000" Rows="5" Columns="7" Orientation="0" OriginLocation="2"
            BinType="ASCII" MapType="Array" NullBin=".">
      <ReferenceDevice ReferenceDeviceX="3" ReferenceDeviceY="0"/>
      <Bin BinCode="G" BinCount="19" BinQuality="Pass" BinDescription="Good die"/>
      <Bin BinCode="X" BinCount="4" BinQuality="Fail" BinDescription="Failed die"/>
      <Data MapName="Map" MapVersion="1">
        <Row><![CDATA[..GGG..]]></Row>
        <Row><![CDATA[.GGXGG.]]></Row>
        <Row>
          <![CDATA[GGXXGGG]]>
        </Row>
        <Row><![CDATA[.GGGGX.]]></Row>
        <Row>..GGG..</Row>
      </Data>
    </Device>
  </Map>
  <Map xmlns="http://www.semi.org" SubstrateType="Wafer" SubstrateId="123456706A1" FormatRevision="SEMI G85 0703">
    <Device Rows="2" Columns="3" Orientation="0" OriginLocation="2" BinType="ASCII" NullBin="0">
      <Bin BinCode="G" BinCount="3" BinQuality="Pass"/>
      <Bin BinCode="X" BinCount="1" BinQuality="Fail"/>
      <Data><Row><![CDATA[0GX]]></Row><Row><![CDATA[GG0]]></Row></Data>
    </Device>
  </Map>
</Maps>
"""

EXPECTED_FIRST = np.array(
    [
        [0, 0, 1, 1, 1, 0, 0],
        [0, 1, 1, 2, 1, 1, 0],
        [1, 1, 2, 2, 1, 1, 1],
        [0, 1, 1, 1, 1, 2, 0],
        [0, 0, 1, 1, 1, 0, 0],
    ]
)

OLDER_DECIMAL = """<?xml version="1.0" encoding="utf-8"?>
<Maps>
<Map xmlns:semi="http://www.semi.org" WaferId="XXXXXXXX-0001" FormatRevision="G85-1101">
<Device ProductId="" WaferSize="150" LotId="XXXXXXXX" CreateDate="" SupplierName="" Rows="3" Columns="4"
 Orientation="180" OriginLocation="3" BinType="Decimal" NullBin="255">
<Bin BinCode="001" BinCount="5" BinQuality="Pass" BinDescription="good"/>
<Bin BinCode="012" BinCount="2" BinQuality="Fail" BinDescription="open"/>
<Bin BinCode="40" BinCount="1" BinQuality="fail" BinDescription="short"/>
<Data MapName="" Version="">
<Row>255 001 001 255</Row>
<Row>1 012 12 040</Row>
<Row>255 001 001 255</Row>
</Data>
</Device>
</Map>
</Maps>
"""


def _write(tmp_path: Path, text: str, name: str = "f.xml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_published_example_shape_ascii_several_maps(tmp_path):
    maps = list(iter_g85(_write(tmp_path, PUBLISHED_SHAPE)))
    assert [m.map_id for m in maps] == ["123456705F2", "123456706A1"]
    np.testing.assert_array_equal(maps[0].states, EXPECTED_FIRST)
    np.testing.assert_array_equal(maps[1].states, [[0, 1, 2], [1, 1, 0]])
    assert maps[0].bin_counts == {".": 12, "G": 19, "X": 4}
    assert (maps[0].orientation, maps[0].origin) == ("0", "2")
    assert all(m.label is None for m in maps)


def test_older_writer_decimal_bins_without_namespace_or_padding(tmp_path):
    (m,) = iter_g85(_write(tmp_path, OLDER_DECIMAL))
    assert m.map_id == "XXXXXXXX-0001" and m.bin_type == "decimal"
    np.testing.assert_array_equal(m.states, [[0, 1, 1, 0], [1, 2, 2, 2], [0, 1, 1, 0]])
    # Orientation/origin are reported, never used to move dies (docs/g85.md).
    assert (m.orientation, m.origin) == ("180", "3")


def _foreign_52(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 52×52 wafer as another tool writes it: Decimal codes unpadded, null 255,
    two pass bins and five fail bins, no edge-infer attributes."""
    rng = np.random.default_rng(52)
    yy, xx = np.mgrid[:52, :52]
    disc = (yy - 25.5) ** 2 + (xx - 25.5) ** 2 <= 26**2
    codes = rng.choice([1, 2, 3, 4, 5, 6, 7], size=(52, 52), p=[0.6, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])
    codes[~disc] = 255
    quality = {1: "Pass", 2: "Pass", 3: "Fail", 4: "Fail", 5: "Fail", 6: "Fail", 7: "Fail"}
    bins = "".join(
        f'      <Bin BinCode="{c}" BinCount="{int((codes == c).sum())}" BinQuality="{q}" BinDescription="bin {c}"/>\n'
        for c, q in quality.items()
    )
    rows = "".join(f"        <Row><![CDATA[{' '.join(str(v) for v in row)}]]></Row>\n" for row in codes)
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Maps>\n'
        '  <Map xmlns="http://www.semi.org" SubstrateType="Wafer" SubstrateId="LOT7-W03" FormatRevision="SEMI G85 0703">\n'
        '    <Device BinType="Decimal" NullBin="255" Rows="52" Columns="52" Orientation="0" OriginLocation="2" LotId="LOT7">\n'
        f'{bins}      <Data MapName="sort1" MapVersion="2">\n{rows}      </Data>\n    </Device>\n  </Map>\n</Maps>\n'
    )
    states = np.where(codes == 255, 0, np.where(np.isin(codes, [1, 2]), 1, 2)).astype(np.uint8)
    return _write(tmp_path, text, "lot7.xml"), codes, states


def test_foreign_52x52_decimal_with_several_fail_bins(run, tmp_path):
    path, _, states = _foreign_52(tmp_path)
    (m,) = iter_g85(path)
    np.testing.assert_array_equal(m.states, states)  # the die states its bins mean, at 52×52
    code, out, err = run("convert", "--data", str(path), "--out", str(tmp_path / "o"))
    assert code == 0, err
    (note,) = [line for line in err.splitlines() if line.startswith("note: resized")]
    assert "52×52" in note and "to 26×26" in note
    assert "no label.npy" in err
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "data.npy"), to_onehot(resize_states(states))[None])
    assert not (tmp_path / "o" / "label.npy").exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(path)
    assert [w.category for w in caught] == [ResizeNote]
    np.testing.assert_array_equal(ds.maps[0], to_onehot(resize_states(states)))


def test_explicit_bin_map_overrides_quality(run, tmp_path):
    path, codes, states = _foreign_52(tmp_path)
    (m,) = iter_g85(path, bin_map="2=defect,7=boundary")
    want = states.copy()
    want[codes == 2] = 2  # a Pass bin, named a defect
    want[codes == 7] = 0  # a Fail bin, named off-wafer (say, edge exclusion)
    assert (codes == 2).any() and (codes == 7).any()
    np.testing.assert_array_equal(m.states, want)
    code, _, err = run("convert", "--data", str(path), "--bin-map", "002=defect,7=boundary", "--out", str(tmp_path / "m"))
    assert code == 0, err  # codes compare by value: 002 is bin 2
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "data.npy")[0], to_onehot(resize_states(want)))
    code, _, err = run("convert", "--data", str(path), "--bin-map", "2=sideways", "--out", str(tmp_path / "o"))
    assert code == 1 and "state must be boundary, normal or defect" in _one_error_line(err)


@pytest.mark.parametrize(
    "bin_type, null, rows",
    [
        ("HexaDecimal", "FF", ["FF0102FF", "01 02 02 01", "ff0101ff"]),
        ("Hex", "FF", ["FF0102FF", "01020201", "FF0101FF"]),
        ("Integer2", "FFFF", ["FFFF00010002FFFF", "0001 0002 0002 0001", "FFFF00010001FFFF"]),
    ],
)
def test_hex_and_integer2_bins(tmp_path, bin_type, null, rows):
    text = (
        f'<Maps><Map SubstrateId="h"><Device BinType="{bin_type}" NullBin="{null}" Rows="3" Columns="4">'
        '<Bin BinCode="1" BinQuality="Pass"/><Bin BinCode="02" BinQuality="Fail"/><Data>'
        + "".join(f"<Row>{r}</Row>" for r in rows)
        + "</Data></Device></Map></Maps>"
    )
    (m,) = iter_g85(_write(tmp_path, text))
    np.testing.assert_array_equal(m.states, [[0, 1, 2, 0], [1, 2, 2, 1], [0, 1, 1, 0]])


def test_augment_and_reconstruct_take_g85_input(run, tmp_path, bundle_dir):
    states = _random_states(4, seed=5)
    path = save_g85(tmp_path / "in.xml", states, [0, 3, 8, 8])
    code, out, err = run("reconstruct", "--data", str(path), "--model", str(bundle_dir))
    assert code == 0, err
    assert "maps: 4 from" in out
    code, out, err = run("augment", "--data", str(path), "-k", "2", "-o", str(tmp_path / "a"), "--model", str(bundle_dir), "--seed", "0")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "gen_label.npy")[:, 0], [0, 0, 3, 3, 8, 8, 8, 8])
    unlabelled = save_g85(tmp_path / "nolabels.xml", states)
    code, _, err = run("augment", "--data", str(unlabelled), "-o", str(tmp_path / "b"), "--model", str(bundle_dir))
    assert code == 1 and "carry no class" in _one_error_line(err)


def test_generate_and_augment_write_g85(run, tmp_path, bundle_dir):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("generate", "-c", "Loc", "-n", "6", "-s", "2", "-o", str(a), "--model", str(bundle_dir))[0] == 0
    code, out, err = run("generate", "-c", "Loc", "-n", "6", "-s", "2", "-o", str(b), "--format", "g85", "--model", str(bundle_dir))
    assert code == 0, err
    assert sorted(p.name for p in b.iterdir()) == ["gen_maps.xml", "generated.png"]
    got = load_dataset(b / "gen_maps.xml")
    np.testing.assert_array_equal(got.maps, np.load(a / "gen_data.npy"))
    np.testing.assert_array_equal(got.labels, np.load(a / "gen_label.npy"))
    c = tmp_path / "c"
    code, out, err = run("augment", "-k", "1", "-s", "0", "-o", str(c), "--format", "both", "--model", str(bundle_dir))
    assert code == 0, err
    both = load_dataset(c / "gen_maps.xml")
    np.testing.assert_array_equal(both.maps, np.load(c / "gen_data.npy"))
    np.testing.assert_array_equal(both.labels, np.load(c / "gen_label.npy"))
    code, _, err = run("generate", "-n", "2", "--format", "xml", "-o", str(tmp_path / "d"), "--model", str(bundle_dir))
    assert code == 1 and "'xml' is not one of 'npy', 'g85', 'both'" in _one_error_line(err)


# ---------------------------------------------------------------- malformed files

GOOD = """<?xml version="1.0"?>
<Maps>
 <Map SubstrateId="W1">
  <Device BinType="ASCII" NullBin="." Rows="3" Columns="3">
   <Bin BinCode="1" BinQuality="Pass" BinCount="4"/>
   <Bin BinCode="X" BinQuality="Fail" BinCount="1"/>
   <Data><Row>.1.</Row><Row>1X1</Row><Row>.1.</Row></Data>
  </Device>
 </Map>
 <Map SubstrateId="W2">
  <Device BinType="ASCII" NullBin="." Rows="3" Columns="3">
   <Bin BinCode="1" BinQuality="Pass" BinCount="5"/>
   <Bin BinCode="X" BinQuality="Fail" BinCount="0"/>
   <Data><Row>.1.</Row><Row>111</Row><Row>.1.</Row></Data>
  </Device>
 </Map>
</Maps>
"""

MALFORMED = [
    ("short row", ("<Row>111</Row><Row>.1.</Row></Data>", "<Row>11</Row><Row>.1.</Row></Data>"), "map 'W2', row 2: 2 dies where its Columns=3"),
    ("unknown code", ("<Row>111</Row>", "<Row>1Z1</Row>"), "map 'W2', row 2: column 2: bin code 'Z' is neither the NullBin"),
    ("count disagrees", ('BinCount="5"', 'BinCount="6"'), "map 'W2': bin '1' declares BinCount=6 but 5 dies carry it"),
    ("missing data", ("<Data><Row>.1.</Row><Row>111</Row><Row>.1.</Row></Data>", ""), "map 'W2': has no <Data>"),
    ("too few rows", ("<Row>111</Row><Row>.1.</Row></Data>", "<Row>111</Row></Data>"), "map 'W2': has 2 <Row>s but its Rows=3"),
    ("too many rows", ("<Row>111</Row><Row>.1.</Row></Data>", "<Row>111</Row><Row>.1.</Row><Row>...</Row></Data>"), "map 'W2', row 4: has more <Row>s than its Rows=3"),
    ("no bin type", ('<Device BinType="ASCII" NullBin="." Rows="3" Columns="3">\n   <Bin BinCode="1" BinQuality="Pass" BinCount="5"/>', '<Device NullBin="." Rows="3" Columns="3">\n   <Bin BinCode="1" BinQuality="Pass" BinCount="5"/>'), "map 'W2': its <Device> has no BinType"),
    ("odd quality", ('BinQuality="Pass" BinCount="5"', 'BinQuality="Inked" BinCount="5"'), "bin '1' has BinQuality='inked', neither Pass nor Fail"),
    ("bad rows attribute", ('Rows="3" Columns="3">\n   <Bin BinCode="1" BinQuality="Pass" BinCount="5"/>', 'Rows="three" Columns="3">\n   <Bin BinCode="1" BinQuality="Pass" BinCount="5"/>'), "map 'W2': Rows='three' is not a positive whole number"),
    ("huge rows attribute", ('Rows="3" Columns="3">\n   <Bin BinCode="1" BinQuality="Pass" BinCount="5"/>', 'Rows="3" Columns="999999999">\n   <Bin BinCode="1" BinQuality="Pass" BinCount="5"/>'), "Columns=999999999 is more than 16384"),
    ("bad class", ('<Map SubstrateId="W2">', f'<Map xmlns:ei="{EI_NS}" SubstrateId="W2" ei:ClassIndex="12">'), "map 'W2': ei:ClassIndex='12' is not a class index 0..8"),
    ("class order", ('<Map SubstrateId="W2">', f'<Map xmlns:ei="{EI_NS}" SubstrateId="W2" ei:ClassIndex="5" ei:Class="Scratch">'), "written with another class order"),
    ("truncated", ("</Map>\n</Maps>", "</Map>"), "is not well-formed XML: no element found"),
    ("not g85", ("<Maps>", "<html>"), "the document's root is <html>, not <Maps> or <Map>"),
    ("duplicate bin", ('<Bin BinCode="X" BinQuality="Fail" BinCount="0"/>', '<Bin BinCode="X" BinQuality="Fail" BinCount="0"/><Bin BinCode="X" BinQuality="Fail"/>'), "declares bin 'X' twice"),
]


@pytest.mark.parametrize("case, edit, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files_give_one_clear_error(run, tmp_path, case, edit, message):
    old, new = edit
    i = GOOD.rindex(old)  # the last occurrence: in map W2, so W1 reads first
    text = GOOD[:i] + new + GOOD[i + len(old):]
    path = _write(tmp_path, text)
    with pytest.raises(G85Error) as exc:
        list(iter_g85(path))
    assert message in str(exc.value) and str(path) in str(exc.value)
    assert "\n" not in str(exc.value)
    out = tmp_path / "out"
    code, stdout, err = run("convert", "--data", str(path), "--to", "npy", "--out", str(out))
    assert code == 1 and message in _one_error_line(err)
    assert not out.exists()  # no folder, no half-written data.npy


def test_the_good_file_reads(tmp_path):
    maps = list(iter_g85(_write(tmp_path, GOOD)))
    assert [m.map_id for m in maps] == ["W1", "W2"]


def test_labels_on_some_maps_only(run, tmp_path):
    text = GOOD.replace('<Map SubstrateId="W2">', f'<Map xmlns:ei="{EI_NS}" SubstrateId="W2" ei:ClassIndex="5">')
    path = _write(tmp_path, text)
    assert [m.label for m in iter_g85(path)] == [None, 5]  # the iterator reports what each map says
    code, _, err = run("convert", "--data", str(path), "--out", str(tmp_path / "o"))
    assert code == 1 and "map 'W1' carries no class (ei:ClassIndex) while map 'W2' does" in _one_error_line(err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("payload", [b"", b"   \n", b"<?xml version='1.0'?>", b"\x00\x01garbage", b"<Maps></Maps>"])
def test_empty_or_garbage_files(tmp_path, payload):
    p = tmp_path / "x.xml"
    p.write_bytes(payload)
    with pytest.raises(G85Error):
        list(iter_g85(p))


def test_failure_keeps_existing_outputs(run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.npy").write_bytes(b"mine")
    (out / "label.npy").write_bytes(b"mine too")
    bad = _write(tmp_path, GOOD.replace("<Row>1X1</Row>", "<Row>1?1</Row>"))
    code, _, err = run("convert", "--data", str(bad), "--out", str(out), "--force")
    assert code == 1 and "bin code '?'" in _one_error_line(err)
    assert (out / "data.npy").read_bytes() == b"mine" and (out / "label.npy").read_bytes() == b"mine too"
    assert sorted(p.name for p in out.iterdir()) == ["data.npy", "label.npy"]  # no temporary files left
    code, _, err = run("convert", "--data", str(_write(tmp_path, GOOD, "good.xml")), "--out", str(out))
    assert code == 1 and "already exists; use --force" in _one_error_line(err)
    code, _, err = run("convert", "--data", str(tmp_path / "good.xml"), "--out", str(out), "--force")
    assert code == 0, err
    assert not (out / "label.npy").exists() and "removed the old" in err  # it belonged to other maps
    assert np.load(out / "data.npy").shape == (2, 26, 26, 3)


def test_ctrl_c_while_streaming_leaves_nothing(run, tmp_path, monkeypatch):
    from edge_infer.g85 import reader

    path = save_g85(tmp_path / "in.xml", _random_states(3000, seed=7), np.zeros(3000, int))
    real, interrupted = reader.MapBuilder.finish, []

    def finish(self, *args):
        # Interrupted once the output's temporary file is on disk: a partial output exists to be removed.
        if list(tmp_path.rglob("*.edge-infer-part")) and not interrupted:
            interrupted.append(1)
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(reader.MapBuilder, "finish", finish)
    code, _, err = run("convert", "--data", str(path), "--out", str(tmp_path / "o"))
    assert interrupted and code == 130 and "interrupted" in err
    assert not (tmp_path / "o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.xml"]


def test_labels_file_overrides_and_is_checked(run, tmp_path):
    path = _write(tmp_path, GOOD)
    np.save(tmp_path / "l.npy", np.array([[2], [7]]))
    code, _, err = run("convert", "--data", str(path), "--labels", str(tmp_path / "l.npy"), "--out", str(tmp_path / "o"))
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "label.npy"), [[2], [7]])
    np.save(tmp_path / "l3.npy", np.array([1, 2, 3]))
    code, _, err = run("convert", "--data", str(path), "--labels", str(tmp_path / "l3.npy"), "--out", str(tmp_path / "p"))
    assert code == 1 and "3 entries but there are 2 maps" in _one_error_line(err)
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------- hostile files

BOMB = """<?xml version="1.0"?>
<!DOCTYPE Maps [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Maps><Map SubstrateId="&lol9;"><Device BinType="ASCII" NullBin="."><Data><Row>&lol9;</Row></Data></Device></Map></Maps>
"""

HOSTILE = {
    "billion laughs": (BOMB, "declares the XML entity 'lol'"),
    "external entity": (
        '<?xml version="1.0"?><!DOCTYPE Maps [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Maps><Map SubstrateId="&xxe;"/></Maps>',
        "declares the XML entity 'xxe'",
    ),
    "parameter entity": (
        '<?xml version="1.0"?><!DOCTYPE Maps [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]><Maps/>',
        "declares the XML entity 'p'",
    ),
    "undeclared entity": ('<Maps><Map SubstrateId="&nope;"/></Maps>', "undefined entity"),
    "attribute defaults": (
        '<?xml version="1.0"?><!DOCTYPE Maps [<!ATTLIST Bin Pad CDATA "padding">]><Maps/>',
        "declares attributes for <Bin> in its DOCTYPE",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_entities_are_refused_before_any_expansion(run, tmp_path, name):
    text, message = HOSTILE[name]
    path = _write(tmp_path, text)
    with pytest.raises(G85Error, match=message):
        list(iter_g85(path))
    code, out, err = run("convert", "--data", str(path), "--out", str(tmp_path / "o"))
    assert code == 1 and message in _one_error_line(err)
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_external_dtd_is_never_fetched_and_does_not_stop_reading(tmp_path):
    text = GOOD.replace('<?xml version="1.0"?>', '<?xml version="1.0"?>\n<!DOCTYPE Maps SYSTEM "http://127.0.0.1:9/g85.dtd">')
    assert [m.map_id for m in iter_g85(_write(tmp_path, text))] == ["W1", "W2"]


class _CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_so_far = 0

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        self.read_so_far += len(chunk)
        return chunk


def test_maps_stream_out_before_the_file_is_read(tmp_path):
    """Bounded memory: the first map comes out after the first chunk, not after the whole file."""
    buf = io.BytesIO()
    w = G85Writer(buf)
    w.write(_random_states(500, seed=6))
    w.close()
    src = _CountingReader(buf.getvalue())
    it = iter_g85(src)
    first = next(it)
    assert first.map_id == "edge-infer-000001"
    assert src.read_so_far <= 2 * 65536 < len(buf.getvalue()) / 5
    assert sum(1 for _ in it) == 499


def test_an_endless_row_is_cut_short(tmp_path):
    """A row far longer than its Columns allow is refused while it is being read."""
    head = '<Maps><Map SubstrateId="W"><Device BinType="ASCII" NullBin="." Rows="1" Columns="26"><Data><Row>'
    src = _CountingReader(head.encode() + b"1" * 10_000_000 + b"</Row></Data></Device></Map></Maps>")
    with pytest.raises(G85Error, match="a <Row> of more than"):
        list(iter_g85(src))
    assert src.read_so_far < 1_000_000


def test_a_50_mb_attribute_is_refused_at_its_line_after_little_reading(run, tmp_path):
    """expat buffers a tag until it ends; the reader stops a tag still open 64 KiB after it began."""
    from edge_infer.g85 import FIELD_LIMIT

    head = b'<?xml version="1.0"?>\n<Maps>\n <Map SubstrateId="W1" Note="'
    body = b'">' + GOOD.split('<Map SubstrateId="W1">', 1)[1].encode()
    src = _CountingReader(head + b"a" * 50_000_000 + body)
    with pytest.raises(G85Error, match=r"^G85 stream: a tag, comment or declaration runs on for more than 64 KiB.* \(line 3\)$"):
        list(iter_g85(src))
    assert FIELD_LIMIT == 64 * 1024 and src.read_so_far <= 3 * FIELD_LIMIT
    path = tmp_path / "f.xml"
    path.write_bytes(src.getvalue())
    del src
    code, _, err = run("convert", "--data", str(path), "--out", str(tmp_path / "o"))
    assert code == 1 and "more than 64 KiB" in _one_error_line(err) and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('SubstrateId="W2"', f'SubstrateId="W2" Note="{"n" * 70_000}"', "<Map> has attributes longer than 64 KiB (Note alone is 70,000 characters)"),
        ("<Data>", f"{'x' * 70_000}<Data>", "map 'W2': more than 64 KiB of text outside a <Row>"),
        ("<Data>", f"<!--{'c' * 70_000}-->\n<Data>", "map 'W2': a comment longer than 64 KiB"),
        ("<Data>", f"<!--{'c' * 300_000}-->\n<Data>", "map 'W2': a tag, comment or declaration runs on for more than 64 KiB"),
    ],
    ids=["attribute", "text", "comment", "long comment"],
)
def test_fields_outside_rows_are_capped_at_64_kib(tmp_path, old, new, message):
    i = GOOD.rindex(old)  # in map W2: <Map> on line 10, <Data> on line 14
    path = _write(tmp_path, GOOD[:i] + new + GOOD[i + len(old) :])
    with pytest.raises(G85Error) as exc:
        list(iter_g85(path))
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)
    assert str(exc.value).endswith("(line 10)" if "Note" in new else "(line 14)")
    ok = GOOD[:i] + old.replace("<Data>", f"<!-- {'c' * 60_000} --><Data>") + GOOD[i + len(old) :]
    assert [m.map_id for m in iter_g85(_write(tmp_path, ok.replace('SubstrateId="W1"', f'SubstrateId="W1" Note="{"n" * 60_000}"'), "ok.xml"))] == ["W1", "W2"]


# ---------------------------------------------------------------- as a user, in the torch-free runtime


def test_round_trip_and_bomb_in_the_runtime_venv(runtime_venv, tmp_path, wafer_zip):
    exe = str(runtime_venv / "bin" / "edge-infer")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGE_INFER_MODEL")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    r = cli("convert", "--data", str(wafer_zip), "--to", "g85", "--out", "g")
    assert r.returncode == 0, r.stderr
    r = cli("convert", "--data", "g/maps.xml", "--to", "npy", "--out", "back")
    assert r.returncode == 0, r.stderr
    ds = load_dataset(wafer_zip, require_labels=True)
    np.testing.assert_array_equal(np.load(tmp_path / "back" / "data.npy"), ds.maps)
    np.testing.assert_array_equal(np.load(tmp_path / "back" / "label.npy"), ds.labels)
    (tmp_path / "bomb.xml").write_text(BOMB)
    r = cli("convert", "--data", "bomb.xml", "--out", "b")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: bomb.xml declares the XML entity 'lol'")


def test_a_non_number_in_a_decimal_row_is_named(tmp_path):
    text = OLDER_DECIMAL.replace("<Row>1 012 12 040</Row>", "<Row>1 012 1x 040</Row>")
    with pytest.raises(G85Error, match=r"map 'XXXXXXXX-0001', row 2: '1x' is not a Decimal bin code"):
        list(iter_g85(_write(tmp_path, text)))


def test_options_that_would_do_nothing_are_refused(run, tmp_path):
    npy = _npy_input(tmp_path)
    code, _, err = run("convert", "--data", str(npy), "--bin-map", "1=normal", "--out", str(tmp_path / "o"))
    assert code == 1 and "--bin-map says what a G85 file's bins mean" in _one_error_line(err)
    xml = _write(tmp_path, GOOD)
    code, _, err = run("convert", "--data", str(xml), "--lot-id", "L7", "--out", str(tmp_path / "o"))
    assert code == 1 and "--lot-id names the G85 that --to g85 writes; this run writes npy" in _one_error_line(err)
    assert not (tmp_path / "o").exists()


def test_a_decimal_code_too_long_for_any_bin_is_an_error_not_an_overflow(tmp_path):
    text = OLDER_DECIMAL.replace("<Row>1 012 12 040</Row>", "<Row>1 012 99999999999999999999999 040</Row>")
    with pytest.raises(G85Error, match="row 2: '99999999999999999999' is not a Decimal bin code"):
        list(iter_g85(_write(tmp_path, text)))


@pytest.mark.filterwarnings("ignore::edge_infer.wafer.ResizeNote")
@given(st.integers(0, len(GOOD)), st.integers(0, 40), st.binary(max_size=12), st.sampled_from(["ASCII", "Decimal", "Hex", "Integer2"]))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_mutated_files_raise_only_g85_errors(tmp_path, at, cut, insert, bin_type):
    """Cuts and insertions anywhere in a valid file: a result or a G85Error, never another exception."""
    from edge_infer.errors import EdgeInferError

    raw = GOOD.replace('BinType="ASCII"', f'BinType="{bin_type}"').encode()
    path = tmp_path / "fuzz.xml"
    path.write_bytes(raw[:at] + insert + raw[at + cut :])
    try:
        ds = load_dataset(path)
    except EdgeInferError as exc:
        assert isinstance(exc, G85Error) and "\n" not in str(exc)
        return
    assert ds.maps.shape[1:] == (26, 26, 3)


@pytest.mark.parametrize("fmt, names", [("g85", ["gen_maps.xml", "generated.png"]), ("both", ["gen_data.npy", "gen_label.npy", "gen_maps.xml", "generated.png"])])
def test_streamed_generate_writes_g85_and_leaves_no_temporary_folder(run, tmp_path, bundle_dir, monkeypatch, fmt, names):
    a = tmp_path / "a"
    assert run("generate", "-c", "Center", "-n", "12", "-s", "4", "-o", str(a), "--model", str(bundle_dir))[0] == 0
    monkeypatch.setattr("edge_infer.generator.BLOCK_ROWS", 5)  # every generate streams: three blocks here
    b = tmp_path / "b"
    code, out, err = run("generate", "-c", "Center", "-n", "12", "-s", "4", "-o", str(b), "--format", fmt, "--model", str(bundle_dir))
    assert code == 0, err
    assert sorted(p.name for p in b.iterdir()) == names  # hidden temporary folders included
    got = load_dataset(b / "gen_maps.xml")
    np.testing.assert_array_equal(got.maps, np.load(a / "gen_data.npy"))
    np.testing.assert_array_equal(got.labels, np.load(a / "gen_label.npy"))


def test_g85_source_counts_and_labels_first_then_streams_blocks(tmp_path):
    from edge_infer.g85 import G85Source
    from edge_infer.wafer import NotWaferWarning, as_states

    states = _random_states(10, seed=8)
    path = save_g85(tmp_path / "s.xml", states, np.arange(10) % 9)
    src = G85Source(path)
    assert (src.count, src.map_bytes) == (10, 26 * 26)
    np.testing.assert_array_equal(src.labels[:, 0], np.arange(10) % 9)
    assert src.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == load_dataset(path).sha256
    blocks = list(src.raw_blocks(4))
    assert [len(b) for b in blocks] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(blocks), states)
    # Mixed sizes come as lists, which as_states takes (resizing each).
    mixed = _write(tmp_path, PUBLISHED_SHAPE)
    (block,) = G85Source(mixed).raw_blocks(8)
    assert isinstance(block, list) and [b.shape for b in block] == [(5, 7), (2, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResizeNote)
        # The standard's 5×7 example is no wafer (its corners are on-wafer): said, and used as given.
        with pytest.warns(NotWaferWarning, match="1 of 2 maps do not look like wafer maps"):
            assert as_states(block).shape == (2, 26, 26)
    bad = _write(tmp_path, GOOD.replace("<Row>1X1</Row>", "<Row>1?1</Row>"), "bad.xml")
    with pytest.raises(G85Error, match="map 'W1', row 2"):
        G85Source(bad)  # refused on opening, before any block is handed on


def test_a_single_map_root_and_names_in_any_case(tmp_path):
    text = (
        '<?xml version="1.0"?>\n<map substrateid="solo"><device bintype="ascii" nullbin="." rows="2" columns="2">'
        '<bin bincode="g" binquality="PASS" bincount="2"/><bin bincode="x" binquality="FAIL" bincount="1"/>'
        "<data><ROW>g.</ROW><ROW>gx</ROW></data></device></map>"
    )
    (m,) = iter_g85(_write(tmp_path, text))
    assert m.map_id == "solo"
    np.testing.assert_array_equal(m.states, [[1, 0], [1, 2]])


@pytest.mark.filterwarnings("ignore::edge_infer.wafer.ResizeNote")
def test_utf16_and_crlf_files_from_windows_tools(tmp_path):
    from edge_infer.g85 import looks_like_g85

    u16 = tmp_path / "u16.dat"  # no .xml suffix: recognised by its first bytes
    u16.write_text(GOOD.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>'), encoding="utf-16")
    assert looks_like_g85(u16)
    crlf = tmp_path / "crlf.xml"
    crlf.write_bytes(GOOD.replace("\n", "\r\n").encode())
    for path in (u16, crlf):
        ds = load_dataset(path)
        assert ds.maps.shape == (2, 26, 26, 3)
