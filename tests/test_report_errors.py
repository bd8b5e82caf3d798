"""Corrupt, truncated, empty and unknown reports give a clear error naming the file and what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwflow.report import find
from hwflow.report.schema import ReportError
from hwflow.util import HwflowError

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hls_reports"
needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "MANIFEST.tsv").is_file(), reason=f"report fixtures absent ({FIXTURES})"
)


def _fx(part: str, name: str) -> Path:
    return next(p for p in FIXTURES.rglob(name) if part in str(p))


def _cut(src: Path, dst_dir: Path, fraction: float | None = None, upto: str | None = None) -> Path:
    """Write a truncated copy of ``src`` (same file name) into dst_dir."""
    text = src.read_text()
    n = text.index(upto) if upto else int(len(text) * fraction)
    dst = dst_dir / src.name
    dst.write_text(text[:n])
    return dst


@needs_fixtures
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6])
def test_truncated_csynth_xml(tmp_path, fraction):
    p = _cut(_fx("SpAllen", "myproject_csynth.xml"), tmp_path, fraction)
    with pytest.raises(ReportError) as e:
        find.parse_file(p)
    assert str(p) in str(e.value) and ("truncated" in str(e.value))


@needs_fixtures
def test_csynth_xml_missing_elements_are_named(tmp_path):
    src = _fx("SpAllen", "myproject_csynth.xml").read_text()
    p = tmp_path / "myproject_csynth.xml"
    p.write_text(
        src.replace("<EstimatedClockPeriod>3.649</EstimatedClockPeriod>", "").replace(
            "<Part>xczu49dr-ffvf1760-2-e</Part>", ""
        )
    )
    with pytest.raises(ReportError, match=r"missing <UserAssignments><Part>, <EstimatedClockPeriod>"):
        find.parse_file(p)
    p.write_text("<root><a/></root>")
    with pytest.raises(ReportError, match=r"expected <profile>"):
        find.parse_file(p)


@needs_fixtures
@pytest.mark.parametrize(
    "upto,missing",
    [
        ("== Utilization Estimates", "'Utilization Estimates' Total row"),
        ("+ Latency:", "'Latency' summary row"),
        ("|Available            |", "'Utilization Estimates' Available row"),
    ],
)
def test_truncated_csynth_rpt(tmp_path, upto, missing):
    p = _cut(_fx("keras_mha_Vitis", "myproject_csynth.rpt"), tmp_path, upto=upto)
    with pytest.raises(ReportError) as e:
        find.parse_file(p)
    assert str(p) in str(e.value) and missing in str(e.value)


@needs_fixtures
def test_truncated_vivado_synth(tmp_path):
    p = _cut(_fx("keras_mha_Vitis", "vivado_synth.rpt"), tmp_path, upto="2. BLOCKRAM\n-----")
    with pytest.raises(
        ReportError, match=r"vivado_synth.rpt: Vivado utilization report is missing 'Block RAM Tile' row, 'DSPs' row"
    ):
        find.parse_file(p)


@needs_fixtures
def test_truncated_cosim(tmp_path):
    src = _fx("YanLunHuang", "myproject_cosim.rpt")
    p = _cut(src, tmp_path, upto="|   Verilog|")
    with pytest.raises(ReportError, match=r"myproject_cosim.rpt: .*(not closed|no RTL result rows)"):
        find.parse_file(p)
    p = _cut(
        src,
        tmp_path,
        upto="+----------+----------+-----------------------------------------------+----------------"
        "-------------------------------+\n|          |",
    )
    with pytest.raises(ReportError, match=r"no RTL result rows"):
        find.parse_file(p)


@needs_fixtures
def test_truncated_log_is_flagged_incomplete(tmp_path):
    p = _cut(_fx("keras_mha_Vivado", "vitis_hls.log"), tmp_path, upto="***** C/RTL SYNTHESIS COMPLETED")
    rec = find.parse_file(p)
    assert rec["details"]["complete"] is False and rec["fmax_mhz"] == 225.54
    assert "log incomplete (tool did not finish)" in rec["flags"]
    assert rec["details"]["phases_completed"] == ["csim"]


@pytest.mark.parametrize(
    "name", ["myproject_csynth.xml", "myproject_csynth.rpt", "myproject_cosim.rpt", "vivado_synth.rpt", "vitis_hls.log"]
)
def test_empty_file(tmp_path, name):
    p = tmp_path / name
    p.write_text("")
    with pytest.raises(ReportError) as e:
        find.parse_file(p)
    assert str(p) in str(e.value) and "empty" in str(e.value)


@pytest.mark.parametrize(
    "name",
    ["myproject_csynth.xml", "myproject_csynth.rpt", "myproject_cosim.rpt", "vivado_synth.rpt", "vivado_hls.log"],
)
def test_garbage(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"\x00\x01garbage \xff\xfe not a report\n" * 20)
    with pytest.raises(ReportError) as e:
        find.parse_file(p)
    assert str(p) in str(e.value)


def test_unknown_kind(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    with pytest.raises(ReportError, match=r"notes.txt: unknown report kind: expected a \*_csynth.xml"):
        find.parse_file(p)


@needs_fixtures
def test_kind_sniffed_from_content_when_renamed(tmp_path):
    for part, name, kind in [
        ("SpAllen", "myproject_csynth.xml", "csynth_xml"),
        ("keras_mha_Vitis", "myproject_csynth.rpt", "csynth_rpt"),
        ("keras_mha_Vitis", "vivado_synth.rpt", "vivado_synth"),
        ("SpAllen", "myproject_cosim.rpt", "cosim"),
    ]:
        p = tmp_path / f"renamed_{kind}.dat"
        p.write_bytes(_fx(part, name).read_bytes())
        assert find.detect_kind(p) == kind
        assert find.parse_file(p)["kind"] == kind


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(HwflowError, match="no such file or folder"):
        find.parse_path(tmp_path / "nope")
    with pytest.raises(HwflowError, match=r"no vendor reports found .*make synth"):
        find.parse_path(tmp_path)


def test_ambiguous_module_reports_need_a_top(tmp_path):
    d = tmp_path / "x_prj" / "solution1" / "syn" / "report"
    d.mkdir(parents=True)
    (d / "a_csynth.xml").write_text("<profile/>")
    (d / "b_csynth.xml").write_text("<profile/>")
    with pytest.raises(HwflowError, match="cannot tell the top function"):
        find.find_reports(tmp_path)


@needs_fixtures
def test_project_tcl_selects_top_among_module_reports(tmp_path):
    d = tmp_path / "prj" / "jet_prj" / "solution1" / "syn" / "report"
    d.mkdir(parents=True)
    (tmp_path / "prj" / "project.tcl").write_text('variable project_name\nset project_name "jet"\n')
    (d / "jet_csynth.xml").write_bytes(_fx("SpAllen", "myproject_csynth.xml").read_bytes())
    (d / "dense_latency_ap_fixed_config2_s_csynth.xml").write_text("<profile/>")  # a sub-module report
    (d / "dense_latency_ap_fixed_config2_s_csynth.rpt").write_text("x")
    assert find.find_reports(tmp_path) == [d / "jet_csynth.xml"]


def test_vivado_synth_7series_without_prohibited_and_fractional_bram(tmp_path):
    # Vivado 2019-style table (no Prohibited column), Slice LUTs, a fractional Block RAM tile count
    p = tmp_path / "vivado_synth.rpt"
    p.write_text(
        "| Tool Version : Vivado v.2019.2 (lin64) Build 2708876 Wed Nov  6 21:39:14 MST 2019\n"
        "| Design       : myproject\n| Device       : 7z020clg400-1\n| Design State : Synthesized\n\n"
        "1. Slice Logic\n--------------\n\n"
        "+----------------------------+-------+-------+-----------+-------+\n"
        "|          Site Type         |  Used | Fixed | Available | Util% |\n"
        "+----------------------------+-------+-------+-----------+-------+\n"
        "| Slice LUTs*                | 12345 |     0 |     53200 | 23.20 |\n"
        "|   LUT as Logic             | 12000 |     0 |     53200 | 22.56 |\n"
        "| Slice Registers            |  2345 |     0 |    106400 |  2.20 |\n"
        "+----------------------------+-------+-------+-----------+-------+\n\n"
        "2. Memory\n---------\n\n"
        "+-------------------+------+-------+-----------+-------+\n"
        "|     Site Type     | Used | Fixed | Available | Util% |\n"
        "+-------------------+------+-------+-----------+-------+\n"
        "| Block RAM Tile    |  2.5 |     0 |       140 |  1.79 |\n"
        "|   RAMB36/FIFO*    |    2 |     0 |       140 |  1.43 |\n"
        "|   RAMB18          |    1 |     0 |       280 |  0.36 |\n"
        "+-------------------+------+-------+-----------+-------+\n\n"
        "3. DSP\n------\n\n"
        "+-----------+------+-------+-----------+-------+\n"
        "| Site Type | Used | Fixed | Available | Util% |\n"
        "+-----------+------+-------+-----------+-------+\n"
        "| DSPs      |    7 |     0 |       220 |  3.18 |\n"
        "+-----------+------+-------+-----------+-------+\n"
    )
    rec = find.parse_file(p)
    assert rec["resources"] == {"LUT": 12345, "FF": 2345, "DSP": 7, "BRAM_18K": 5, "URAM": None}
    assert rec["available"] == {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM_18K": 280, "URAM": None}
    assert rec["details"]["bram_tiles"] == 2.5 and rec["tool_version"] == "2019.2" and rec["part"] == "7z020clg400-1"
    assert rec["utilization_pct"]["BRAM_18K"] == pytest.approx(100 * 5 / 280, abs=0.01)


def test_csynth_rpt_vivado_hls_2018_layout(tmp_path):
    # Vivado HLS 2018.x: no absolute-latency columns, no units in the timing table
    p = tmp_path / "myproject_csynth.rpt"
    p.write_text(
        "================================================================\n== Vivado HLS Report for 'myproject'\n"
        "================================================================\n* Date:           Mon Jan  7 10:00:00 "
        "2019\n\n"
        "* Version:        2018.2 (Build 2258646 on Thu Jun 14 20:25:20 MDT 2018)\n* Project:        myproject_prj\n"
        "* Solution:       solution1\n* Product family: virtexuplus\n* Target device:  xcvu9p-flgb2104-2-e\n\n\n"
        "================================================================\n== Performance Estimates\n"
        "================================================================\n+ Timing (ns): \n    * Summary: \n"
        "    +--------+-------+----------+------------+\n    |  Clock | Target| Estimated| Uncertainty|\n"
        "    +--------+-------+----------+------------+\n    |ap_clk  |   5.00|     4.371|        0.62|\n"
        "    +--------+-------+----------+------------+\n\n+ Latency (clock cycles): \n    * Summary: \n"
        "    +-----+-----+-----+-----+----------+\n    |  Latency  |  Interval | Pipeline |\n"
        "    | min | max | min | max |   Type   |\n    +-----+-----+-----+-----+----------+\n"
        "    |    9|   11|    1|    1| function |\n    +-----+-----+-----+-----+----------+\n\n"
        "================================================================\n== Utilization Estimates\n"
        "================================================================\n* Summary: \n"
        "+-----------------+---------+-------+--------+--------+-------+\n"
        "|       Name      | BRAM_18K| DSP48E|   FF   |   LUT  |  URAM |\n"
        "+-----------------+---------+-------+--------+--------+-------+\n"
        "|DSP              |        -|      3|       -|       -|      -|\n"
        "+-----------------+---------+-------+--------+--------+-------+\n"
        "|Total            |        0|      3|     512|    2048|      0|\n"
        "+-----------------+---------+-------+--------+--------+-------+\n"
        "|Available        |     4320|   6840| 2364480| 1182240|    960|\n"
        "+-----------------+---------+-------+--------+--------+-------+\n"
    )
    rec = find.parse_file(p)
    assert (rec["tool"], rec["tool_version"], rec["part"]) == ("Vivado HLS", "2018.2", "xcvu9p-flgb2104-2-e")
    assert (rec["clock_target_ns"], rec["clock_estimated_ns"]) == (5.0, 4.371)
    assert (rec["latency_best_cycles"], rec["latency_worst_cycles"], rec["interval_min"], rec["interval_max"]) == (
        9,
        11,
        1,
        1,
    )
    assert rec["resources"] == {"LUT": 2048, "FF": 512, "DSP": 3, "BRAM_18K": 0, "URAM": 0}
    assert rec["details"]["pipeline_type"] == "function"
