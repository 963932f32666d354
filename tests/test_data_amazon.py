"""Amazon 5-core loader: both sequence formats agree, item text, S3-Rec attribute ids, real-data stats."""
from __future__ import annotations

import json

import pytest
from tests.conftest import TINY_ATTRIBUTES, TINY_SEQUENCES

from genir.data.amazon import load_item_attribute_ids, load_sequences
from genir.data.errors import DataFormatError


def as_dict(seqs):
    return dict(zip(seqs.table.column("user_id").to_pylist(), seqs.table.column("items").to_pylist()))


def test_user_sequence_exact(write_amazon):
    seqs = load_sequences(write_amazon(sequential=False))
    assert as_dict(seqs) == TINY_SEQUENCES
    assert seqs.items.column("item_id").to_pylist() == ["A1", "A2", "A3", "A4", "A5"]  # first appearance
    assert dict(zip(*(seqs.items.column(c).to_pylist() for c in ("item_id", "text")))) == {
        "A1": "OPI, Nails", "A2": "Maybelline, Makeup, Lips", "A3": "", "A4": "", "A5": ""}


def test_both_formats_identical(write_amazon):
    folder = write_amazon()
    a = load_sequences(folder, source="user_sequence")
    b = load_sequences(folder, source="sequential_data")
    assert a.table.equals(b.table) and a.items.equals(b.items)
    (folder / "user_sequence.txt").unlink()
    assert load_sequences(folder).table.equals(a.table)  # auto falls back to the P5 files


def test_no_attributes_file_gives_empty_text(write_amazon):
    seqs = load_sequences(write_amazon(attributes={}))
    assert set(seqs.items.column("text").to_pylist()) == {""}


def test_item_attribute_ids_via_datamaps(write_amazon):
    folder = write_amazon()
    (folder / "s3rec_Tiny_item2attributes.json").write_text(json.dumps({"1": [3, 4], "2": [5], "5": []}))
    assert load_item_attribute_ids(folder) == {"A1": [3, 4], "A2": [5], "A5": []}
    (folder / "s3rec_Tiny_item2attributes.json").write_text(json.dumps({"99": [1]}))
    with pytest.raises(DataFormatError, match="item id '99' is not in datamaps.json"):
        load_item_attribute_ids(folder)


def test_errors_name_file_and_line(write_amazon):
    folder = write_amazon()
    (folder / "sequential_data.txt").write_bytes(b"1 1 2\r\n2 3 777\r\n")
    with pytest.raises(DataFormatError, match=r"sequential_data.txt:2: item id '777' is not in datamaps"):
        load_sequences(folder, source="sequential_data")
    (folder / "user_sequence.txt").write_text("U1 A1 A2\nU2\n")
    with pytest.raises(DataFormatError, match=r"user_sequence.txt:2: user 'U2' has no items"):
        load_sequences(folder)
    (folder / "user_sequence.txt").write_text("U1 A1 A2\nU1 A3\n")
    with pytest.raises(DataFormatError, match=r"user_sequence.txt:2: duplicate user 'U1', first seen on line 1"):
        load_sequences(folder)
    (folder / "user_sequence.txt").write_bytes(b"U1 A1\nU2 \xff\xfe\n")
    with pytest.raises(DataFormatError, match=r"user_sequence.txt:2: invalid UTF-8"):
        load_sequences(folder)
    (folder / "datamaps.json").write_text('{"id2item": {\n "1": "A1",\n}')
    with pytest.raises(DataFormatError, match=r"datamaps.json:3: invalid JSON"):
        load_sequences(folder, source="sequential_data")


def test_attribute_file_errors(write_amazon):
    folder = write_amazon()
    (folder / "item_attributes.derived.jsonl").write_text('{"asin": "A1", "attributes": ["x"]}\n'
                                                          '{"asin": "A2", "attributes": "x"}\n')
    with pytest.raises(DataFormatError, match=r"item_attributes.derived.jsonl:2: 'attributes' must be a list"):
        load_sequences(folder)


def test_unknown_source_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match=r"unknown source 'p5'; expected one of \('auto'"):
        load_sequences(tmp_path, source="p5")
    with pytest.raises(FileNotFoundError, match="user_sequence.txt, or sequential_data.txt"):
        load_sequences(tmp_path)


@pytest.mark.realdata
@pytest.mark.parametrize("name, users, items, interactions", [
    ("amazon-beauty", 22363, 12101, 198502), ("amazon-sports", 35598, 18357, 296337)])
def test_real_stats_and_formats_agree(shared_data, name, users, items, interactions):
    folder = shared_data / name
    a = load_sequences(folder, source="user_sequence")
    b = load_sequences(folder, source="sequential_data")
    assert a.table.equals(b.table) and a.items.equals(b.items)
    lengths = [len(s) for s in a.table.column("items").to_pylist()]
    assert (len(a), a.items.num_rows, sum(lengths)) == (users, items, interactions)
    assert min(lengths) >= 5  # 5-core
    attr_ids = load_item_attribute_ids(folder)
    assert set(attr_ids) == set(a.items.column("item_id").to_pylist())
    if name == "amazon-beauty":
        texts = dict(zip(a.items.column("item_id").to_pylist(), a.items.column("text").to_pylist()))
        assert texts["B004756YJA"] == "OPI, Makeup, Nails, Nail Polish"
        assert all(texts.values())  # every Beauty item has derived attributes
