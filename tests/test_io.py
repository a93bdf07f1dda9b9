"""Event file input/output: ROOT round trips, atomic writes, HIGGS CSV streaming and conversion,
and an InputError naming file and place for every kind of bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepflows.errors import InputError
from hepflows.events.convert import convert_higgs_csv
from hepflows.events.generator import generate
from hepflows.events.higgs_csv import iter_higgs_csv
from hepflows.events.reader import count_events, iterate_events, read_events, read_metadata
from hepflows.events.schema import BTAGS, HIGGS_FEATURES, LABEL, WEIGHT
from hepflows.events.writer import EventWriter, write_events

SHARED_HIGGS = Path(__file__).parents[1].parent / "shared" / "data" / "higgs"
SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}


@pytest.fixture(scope="module")
def events() -> dict[str, np.ndarray]:
    return generate(1500, seed=77, units="higgs")


def _outputs(folder: Path, names=("train", "val", "test")) -> dict[str, Path]:
    return {k: folder / f"{k}.root" for k in names}


def _files(folder: Path) -> list[str]:
    """Every file below folder, temporary ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _assert_events_equal(a: dict, b: dict, names) -> None:
    for k in names:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# -- writing and reading ROOT ------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["zlib", "lz4", "zstd", "lzma", None])
def test_round_trip(tmp_path, events, compression):
    weight = np.linspace(0.5, 2.0, len(events[LABEL]))
    path = tmp_path / "ev.root"
    write_events(path, {**events, WEIGHT: weight}, compression=compression)
    got = read_events(path, with_weight=True)
    assert set(got) == {*HIGGS_FEATURES, LABEL, WEIGHT}
    assert all(got[f].dtype == np.float32 for f in HIGGS_FEATURES)
    assert got[LABEL].dtype == np.int8 and got[WEIGHT].dtype == np.float32
    _assert_events_equal(got, events, (*HIGGS_FEATURES, LABEL))
    np.testing.assert_array_equal(got[WEIGHT], weight.astype(np.float32))
    assert count_events(path) == len(events[LABEL])
    assert _files(tmp_path) == ["ev.root"]


def test_read_subsets_and_ranges(tmp_path, events):
    path = tmp_path / "ev.root"
    write_events(path, {f: events[f] for f in ("met", "m_bb", LABEL)})
    got = read_events(path, ["m_bb"], entry_start=10, entry_stop=20, with_weight=True)
    assert set(got) == {"m_bb", LABEL, WEIGHT}
    np.testing.assert_array_equal(got["m_bb"], events["m_bb"][10:20])
    np.testing.assert_array_equal(got[WEIGHT], np.ones(10, np.float32))  # no weight branch
    assert set(read_events(path, with_label=False)) == {"met", "m_bb"}  # None: all features


def test_iterate_events_equals_read(tmp_path, events):
    path = tmp_path / "ev.root"
    write_events(path, events)
    chunks = list(iterate_events(path, ["jet1_pt", "m_wwbb"], step_size=400))
    assert [len(c[LABEL]) for c in chunks] == [400, 400, 400, 300]
    for f in ("jet1_pt", "m_wwbb", LABEL):
        np.testing.assert_array_equal(np.concatenate([c[f] for c in chunks]), events[f])


def test_writer_chunks_equal_one_write(tmp_path, events):
    one, many = tmp_path / "one.root", tmp_path / "many.root"
    write_events(one, events, compression="lz4")
    with EventWriter(many) as w:
        for a, b in [(0, 1), (1, 500), (500, 500), (500, 1500)]:  # an empty chunk included
            w.write({k: v[a:b] for k, v in events.items()})
        assert w.n_written == 1500
        assert not many.exists(), "the file must appear only at the end"
    _assert_events_equal(read_events(many), read_events(one), (*HIGGS_FEATURES, LABEL))
    with uproot.open(many) as f:
        assert f["events"]["met"].num_baskets == 3  # one basket per non-empty chunk


def test_writer_leaves_nothing_after_an_exception(tmp_path, events):
    path = tmp_path / "sub" / "ev.root"
    with pytest.raises(RuntimeError, match="boom"), EventWriter(path) as w:
        w.write(events)
        raise RuntimeError("boom")
    assert _files(tmp_path) == []
    # A bad chunk is an InputError, with the same clean-up.
    with pytest.raises(InputError, match="ev.root.*started with"), EventWriter(path) as w:
        w.write(events)
        w.write({"met": events["met"]})
    assert _files(tmp_path) == []


def test_writer_refuses_bad_chunks(tmp_path):
    path = tmp_path / "bad.root"
    cases = [
        ({"met": np.ones(3), "jet_pt[0]": np.ones(3)}, "not names"),
        ({"met": np.array(["a", "b"])}, "non-numeric"),
        ({"met": np.ones((3, 2))}, "1-D"),
        ({"met": np.ones(3), "m_jj": np.ones(4)}, "different lengths"),
        ({"met": np.ones(3), LABEL: np.array([0, 1, 2])}, "label"),
    ]
    for arrays, words in cases:
        with pytest.raises(InputError, match=words) as info:
            write_events(path, arrays)
        assert "bad.root" in str(info.value)
    with pytest.raises(InputError, match="compression"):
        write_events(path, {"met": np.ones(3)}, compression="gzip")
    assert _files(tmp_path) == []


def test_metadata_round_trip(tmp_path, events):
    path = tmp_path / "ev.root"
    meta = {
        "seed": np.int64(3),
        "config": {"units": "higgs", "split": [0.8, 0.2]},
        "path": tmp_path,
    }
    write_events(path, events, metadata=meta)
    assert read_metadata(path) == {
        "seed": 3,
        "config": {"units": "higgs", "split": [0.8, 0.2]},
        "path": str(tmp_path),
    }
    bare = tmp_path / "bare.root"
    write_events(bare, events)
    assert read_metadata(bare) == {}
    with pytest.raises(InputError, match="JSON"):
        write_events(tmp_path / "x.root", events, metadata={"f": object()})
    assert not (tmp_path / "x.root").exists()


# -- bad ROOT input --------------------------------------------------------------------------------
def _raw_tree(path: Path, branches: dict, data: dict) -> Path:
    with uproot.recreate(path) as f:
        f.mktree("events", branches).extend(data)
        f["note"] = "not a tree"
    return path


def test_root_errors_name_file_and_place(tmp_path, events):
    good = tmp_path / "good.root"
    write_events(good, {f: events[f] for f in ("met", "m_jj", LABEL)})
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "text.root"
    text.write_text("label,met\n1,2\n")
    jagged = _raw_tree(
        tmp_path / "jagged.root",
        {"met": "var * float32", "m_jj": np.float32, LABEL: np.int8},
        {
            "met": ak.Array([[1.0, 2.0], [3.0]]),
            "m_jj": np.ones(2, np.float32),
            LABEL: np.array([0, 1], np.int8),
        },
    )
    strings = _raw_tree(
        tmp_path / "strings.root",
        {"met": "string", LABEL: np.int8},
        {"met": ak.Array(["a", "b"]), LABEL: np.array([0, 1], np.int8)},
    )
    labels = _raw_tree(
        tmp_path / "labels.root",
        {"met": np.float32, LABEL: np.int8},
        {"met": np.ones(4, np.float32), LABEL: np.array([0, 1, 3, 1], np.int8)},
    )
    cases = [
        (tmp_path / "absent.root", {}, ["absent.root", "no such file"]),
        (text, {}, ["text.root", "not a ROOT file"]),
        (truncated, {}, ["truncated.root", "truncated"]),
        (good, {"tree": "ntuple"}, ["good.root", "'ntuple'", "'events'"]),
        (jagged, {"tree": "note"}, ["jagged.root", "'note'", "TObjString"]),
        (good, {"features": ["met", "m_bb"]}, ["good.root", "m_bb", "m_jj"]),
        (good, {"features": ["met", "mass"]}, ["good.root", "mass"]),
        (jagged, {"features": ["met", "m_jj"]}, ["jagged.root", "['met']", "several values"]),
        (strings, {"features": ["met"]}, ["strings.root", "met", "not numeric"]),
        (labels, {"features": ["met"]}, ["labels.root", "label", "entry 2", "3"]),
    ]
    for path, kwargs, words in cases:
        with pytest.raises(InputError) as info:
            read_events(path, **kwargs)
        for word in words:
            assert word in str(info.value), (word, str(info.value))
    for reader in (count_events, read_metadata):
        with pytest.raises(InputError, match="truncated"):
            reader(truncated)
    with pytest.raises(InputError, match="several values"):
        list(iterate_events(jagged, ["met"]))


# -- HIGGS CSV ---------------------------------------------------------------------------------------
def _csv_lines(ev: dict, n: int | None = None) -> list[str]:
    cols = [ev[LABEL], *(ev[f] for f in HIGGS_FEATURES)]
    rows = np.column_stack(cols)[:n]
    return [",".join(f"{v:.9g}" for v in row) for row in rows]


def _write(path: Path, lines: list[str], gz: bool | None = None) -> Path:
    data = ("\n".join(lines) + "\n").encode() if lines else b""
    if gz if gz is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def csv_lines(events) -> list[str]:
    return _csv_lines(events, 300)


def test_csv_round_trip_in_chunks(tmp_path, events, csv_lines):
    for name in ("h.csv", "h.csv.gz"):
        path = _write(tmp_path / name, csv_lines)
        chunks = list(iter_higgs_csv(path, chunk_rows=70))
        assert [len(c[LABEL]) for c in chunks] == [70, 70, 70, 70, 20]
        got = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        assert got[LABEL].dtype == np.int8 and got["met"].dtype == np.float32
        _assert_events_equal(got, {k: v[:300] for k, v in events.items()}, (*HIGGS_FEATURES, LABEL))
        limited = list(iter_higgs_csv(path, chunk_rows=70, limit=75))
        assert [len(c[LABEL]) for c in limited] == [70, 5]


def _bad_csvs(folder: Path, lines: list[str]) -> list[tuple[Path, list[str]]]:
    """(file, words its error must contain) for every kind of bad CSV."""

    def edit(row: int, col: int, token: str) -> list[str]:
        out = list(lines)
        fields = out[row - 1].split(",")
        fields[col - 1] = token
        out[row - 1] = ",".join(fields)
        return out

    short = list(lines)
    short[57 - 1] = ",".join(short[57 - 1].split(",")[:-1])
    gz = gzip.compress(("\n".join(lines) + "\n").encode())
    truncated = folder / "truncated.csv.gz"
    truncated.write_bytes(gz[: len(gz) // 2])
    corrupt = folder / "corrupt.csv.gz"
    corrupt.write_bytes(gz[:30] + bytes(40) + gz[70:])
    nan = edit(88, 11, "nan")
    nan[90 - 1] = ",".join(nan[90 - 1].split(",")[:10] + ["inf"] + nan[90 - 1].split(",")[11:])
    return [
        (folder / "absent.csv", ["absent.csv", "no such file"]),
        (_write(folder / "empty.csv", []), ["empty.csv", "empty"]),
        (_write(folder / "empty.csv.gz", []), ["empty.csv.gz", "empty"]),
        (_write(folder / "short.csv", short), ["short.csv", "row 57", "28 value(s)", "29"]),
        (
            _write(folder / "token.csv", edit(123, 7, "1.2.3")),
            ["token.csv", "row 123", "column 7", "jet1_pt", "'1.2.3'"],
        ),
        (
            _write(folder / "token.csv.gz", edit(5, 29, "abc")),
            ["token.csv.gz", "row 5", "column 29", "m_wwbb"],
        ),
        (
            _write(folder / "blank.csv", edit(40, 1, "")),
            ["blank.csv", "row 40", "column 1", "label"],
        ),
        (
            _write(folder / "header.csv", ["label," + ",".join(HIGGS_FEATURES), *lines]),
            ["header.csv", "row 1", "column 1"],
        ),
        (
            _write(folder / "nan.csv", nan),
            ["nan.csv", "NaN or Inf", "column 11 (jet2_pt): 2", "first at row 88"],
        ),
        (
            _write(folder / "label.csv", edit(201, 1, "2")),
            ["label.csv", "row 201", "label 2.0", "0 or 1"],
        ),
        (truncated, ["truncated.csv.gz", "truncated or corrupt", "row"]),
        (corrupt, ["corrupt.csv.gz", "truncated or corrupt"]),
    ]


def test_csv_errors_name_file_row_and_column(tmp_path, csv_lines):
    for path, words in _bad_csvs(tmp_path, csv_lines):
        with pytest.raises(InputError) as info:
            list(iter_higgs_csv(path, chunk_rows=50))
        for word in words:
            assert word in str(info.value), (path.name, word, str(info.value))


def test_csv_slabs_change_neither_rows_nor_errors(tmp_path, monkeypatch, events, csv_lines):
    """Slabs of 997 bytes (rows cut across them, several slabs per chunk) read the same rows and
    name the same places as the default slab."""
    from hepflows.events import higgs_csv

    monkeypatch.setattr(higgs_csv, "CSV_SLAB_SIZE", 997)
    path = _write(tmp_path / "h.csv.gz", csv_lines)
    chunks = list(iter_higgs_csv(path, chunk_rows=70))
    assert [len(c[LABEL]) for c in chunks] == [70, 70, 70, 70, 20]
    got = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    _assert_events_equal(got, {k: v[:300] for k, v in events.items()}, (*HIGGS_FEATURES, LABEL))
    (tmp_path / "bad").mkdir()
    for path, words in _bad_csvs(tmp_path / "bad", csv_lines):
        with pytest.raises(InputError) as info:
            list(iter_higgs_csv(path, chunk_rows=50))
        for word in words:
            assert word in str(info.value), (path.name, word, str(info.value))


def test_csv_slabs_stay_whole_while_the_next_ones_are_read(monkeypatch):
    """Each slab is parsed in a thread of its own while the next is read: a slab's text must
    stay as it was until ``buffers - 1`` more slabs have been handed on."""
    import io

    import pyarrow as pa

    from hepflows.events import higgs_csv

    monkeypatch.setattr(higgs_csv, "CSV_SLAB_SIZE", 64)
    text = b"".join(b"%d,%s\n" % (i, b"7" * (i % 13)) for i in range(200))
    for buffers in (1, 2, 3):
        views, copies = [], []
        for view in higgs_csv._slabs(pa.PythonFile(io.BytesIO(text), mode="r"), buffers):
            views.append(view)
            copies.append(bytes(view))
            # the slabs still held (this one and the buffers - 1 before it) are as they were
            for old, copy in zip(views[-buffers:], copies[-buffers:], strict=True):
                assert bytes(old) == copy
        assert b"".join(copies) == text
        assert all(c.endswith(b"\n") for c in copies)
    assert higgs_csv.PARSE_THREADS >= 2


def test_prefetch_keeps_order_raises_in_place_and_stops_when_closed():
    import threading

    from hepflows.events.prefetch import prefetch

    def items():
        yield from range(5)
        raise ValueError("broken after 5")

    got = []
    with pytest.raises(ValueError, match="broken after 5"):
        for x in prefetch(items(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    reader = prefetch(endless(), depth=3, name="test-prefetch")
    assert [next(reader) for _ in range(4)] == [0, 1, 2, 3]
    reader.close()
    assert closed.is_set()
    assert not any(t.name == "test-prefetch" for t in threading.enumerate())


def test_truncated_gzip_names_the_last_complete_row(tmp_path, csv_lines):
    data = gzip.compress(("\n".join(csv_lines) + "\n").encode())
    path = tmp_path / "t.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        list(iter_higgs_csv(path))
    complete = gzip.decompress(data).count(b"\n")
    row = int(str(info.value).split("after row ")[1].split()[0])
    assert 0 < row < complete


def test_failed_conversion_leaves_no_output(tmp_path, csv_lines):
    bad = tmp_path / "bad"
    bad.mkdir()
    out = tmp_path / "out"
    for path, _ in _bad_csvs(bad, csv_lines):
        with pytest.raises(InputError):
            convert_higgs_csv(path, _outputs(out), split=SPLIT, chunk_rows=50)
        assert not out.exists() or _files(out) == [], path.name


# -- conversion --------------------------------------------------------------------------------------
def _read_all(outputs: dict[str, Path]) -> dict[str, dict[str, np.ndarray]]:
    return {k: read_events(p) for k, p in outputs.items()}


def test_convert_csv_fractions(tmp_path, events):
    lines = _csv_lines(events)
    path = _write(tmp_path / "h.csv.gz", lines)
    out_a, out_b = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    counts = convert_higgs_csv(path, out_a, split=SPLIT, chunk_rows=1000, metadata={"run": "x"})
    assert sum(counts.values()) == len(lines)
    for k, frac in SPLIT.items():
        n, p = len(lines), frac
        assert abs(counts[k] - n * p) < 4 * np.sqrt(n * p * (1 - p)) + 1, k
        assert count_events(out_a[k]) == counts[k]
        meta = read_metadata(out_a[k])
        assert (meta["run"], meta["split"], meta["rows"]) == ("x", k, counts[k])
    # The assignment depends on the row index only, not on the chunking.
    assert convert_higgs_csv(path, out_b, split=SPLIT, chunk_rows=211) == counts
    a, b = _read_all(out_a), _read_all(out_b)
    for k in SPLIT:
        _assert_events_equal(a[k], b[k], (*HIGGS_FEATURES, LABEL))
    # Every row lands in exactly one split.
    merged = np.sort(np.concatenate([a[k]["m_wwbb"] for k in SPLIT]))
    np.testing.assert_array_equal(merged, np.sort(events["m_wwbb"]))


def test_convert_csv_higgs_convention(tmp_path, events):
    lines = _csv_lines(events)
    path = _write(tmp_path / "h.csv", lines)
    out = _outputs(tmp_path / "o")
    split = {"convention": "higgs", "val": 0.2, "test_rows": 400}
    counts = convert_higgs_csv(path, out, split=split, chunk_rows=130, limit=1400)
    assert counts["test"] == 400 and counts["train"] + counts["val"] == 1000
    assert abs(counts["val"] - 200) < 4 * np.sqrt(1000 * 0.2 * 0.8)
    got = _read_all(out)
    np.testing.assert_array_equal(got["test"]["met"], events["met"][1000:1400])  # the last rows
    rest = np.sort(np.concatenate([got["train"]["met"], got["val"]["met"]]))
    np.testing.assert_array_equal(rest, np.sort(events["met"][:1000]))
    # The plain "higgs" keeps 500,000 test rows: a small file is all test, with empty train/val.
    counts = convert_higgs_csv(path, _outputs(tmp_path / "p"), split="higgs")
    assert counts == {"train": 0, "val": 0, "test": len(lines)}
    assert count_events(tmp_path / "p" / "train.root") == 0
    with pytest.raises(InputError, match="outputs"):
        convert_higgs_csv(path, _outputs(tmp_path / "q", ("train", "test")), split="higgs")
    with pytest.raises(InputError, match="sum to"):
        convert_higgs_csv(
            path, _outputs(tmp_path / "q"), split={"train": 0.5, "val": 0.1, "test": 0.1}
        )
    assert not (tmp_path / "q").exists() or _files(tmp_path / "q") == []


def test_real_higgs_subset(tmp_path):
    path = SHARED_HIGGS / "higgs_real_subset.csv.gz"
    if not path.exists():
        pytest.skip(f"real HIGGS subset not present at {path}")
    out = _outputs(tmp_path)
    counts = convert_higgs_csv(path, out, split=SPLIT)
    assert sum(counts.values()) == 15_977
    splits = _read_all(out).values()
    ev = {k: np.concatenate([e[k] for e in splits]) for k in (LABEL, *HIGGS_FEATURES)}
    assert abs(ev[LABEL].mean() - 0.532) < 0.001
    for f in ("lepton_pt", "met", "jet1_pt", "jet2_pt", "jet3_pt", "jet4_pt"):
        assert ev[f].min() > 0, f
    assert np.abs(ev["lepton_eta"]).max() < 2.6
    assert np.abs(ev["jet1_phi"]).max() < 1.75
    higgs_levels = {
        "jet1_btag": 1.0865,
        "jet2_btag": 1.1074,
        "jet3_btag": 1.2741,
        "jet4_btag": 1.5510,
    }
    for f in BTAGS:
        levels = np.unique(ev[f])
        assert len(levels) == 3, f
        np.testing.assert_allclose(levels, [0, higgs_levels[f], 2 * higgs_levels[f]], atol=1e-4)
