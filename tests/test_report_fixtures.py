"""Every real report in ../shared/fixtures/hls_reports/ must parse to exactly its MANIFEST.tsv numbers."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from hwflow.report import find
from hwflow.report.schema import RECORD_KEYS, RESOURCE_KEYS

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hls_reports"
MANIFEST = FIXTURES / "MANIFEST.tsv"

pytestmark = pytest.mark.skipif(not MANIFEST.is_file(), reason=f"report fixtures absent ({FIXTURES})")

KIND = {
    "csynth_xml": "csynth_xml",
    "csynth_rpt": "csynth_rpt",
    "cosim_rpt": "cosim",
    "hls_log": "log",
    "vivado_synth_rpt": "vivado_synth",
}


def _rows() -> list[dict[str, str]]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _int(cell: str):
    cell = cell.strip()
    if cell in ("-", "NA", ""):
        return None
    return int(re.match(r"\d+", cell).group(0))


def _float(cell: str):
    cell = cell.strip()
    return None if cell in ("-", "NA", "") else float(cell)


def _expected(row: dict[str, str]) -> dict:
    """Translate one manifest row into the values our record must carry."""
    exp: dict = {"kind": KIND[row["file_kind"]]}
    tv = row["tool_and_version"]
    if "no version in file" in tv:
        exp["tool_version"] = None
    else:
        m = re.match(r"(Vivado\(TM\) HLS|Vivado HLS|Vitis HLS|Vivado)\s+v?\.?(\d{4}\.\d+(?:\.\d+)?)", tv)
        assert m, f"manifest tool cell not understood: {tv}"
        exp["tool"] = m.group(1).replace("(TM)", "")
        exp["tool_version"] = m.group(2)
        b = re.search(r"Build (\d+)", tv)
        if b:
            exp["details.tool_build"] = b.group(1)
    exp["part"] = None if row["part"] == "-" else row["part"]
    exp["top"] = None if row["top_module"] == "-" else row["top_module"]
    exp["clock_target_ns"] = _float(row["target_clock_ns"])
    est = row["estimated_clock_ns"]
    m = re.match(r"Fmax ([\d.]+) MHz \(=([\d.]+) ns\)", est)
    if m:
        exp["fmax_mhz"] = float(m.group(1))
        exp["clock_estimated_ns"] = float(m.group(2))
    else:
        exp["clock_estimated_ns"] = _float(est)
    exp["latency_best_cycles"] = _int(row["best_latency_cycles"])
    exp["latency_worst_cycles"] = _int(row["worst_latency_cycles"])
    exp["interval_min"] = _int(row["interval_min"])
    exp["interval_max"] = _int(row["interval_max"])
    for k in ("LUT", "FF", "DSP", "URAM"):
        exp[f"resources.{k}"] = _int(row[k])
    bram = row["BRAM_18K"]
    m = re.match(r"Block RAM Tile ([\d.]+) \(RAMB36/FIFO ([\d.]+), RAMB18 ([\d.]+)\)", bram)
    if m:
        # the utilization report counts 36 Kb tiles; the schema counts 18 Kb blocks like the HLS reports
        exp["resources.BRAM_18K"] = int(2 * float(m.group(2)) + float(m.group(3)))
        exp["details.bram_tiles"] = float(m.group(1))
    else:
        exp["resources.BRAM_18K"] = _int(bram)
    return exp


def _get(rec: dict, dotted: str):
    cur = rec
    for part in dotted.split("."):
        cur = cur[part]
    return cur


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["saved_path"].split("/")[0] + ":" + Path(r["saved_path"]).name)
def test_fixture_matches_manifest(row):
    path = FIXTURES / row["saved_path"]
    rec = find.parse_file(path)
    assert tuple(rec) == RECORD_KEYS
    assert rec["source"] == str(path)
    exp = _expected(row)
    got = {k: _get(rec, k) for k in exp}
    for k, v in exp.items():
        if isinstance(v, float):
            assert got[k] == pytest.approx(v, abs=5e-4), k
        else:
            assert got[k] == v, k
    # resource keys are always all present, and no unrelated numbers are invented for non-resource reports
    assert set(rec["resources"]) == set(RESOURCE_KEYS)
    if exp["kind"] in ("cosim", "log"):
        assert all(v is None for v in rec["resources"].values())


def test_manifest_covers_every_fixture_file():
    listed = {r["saved_path"] for r in _rows()}
    on_disk = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.is_file() and p.name != "MANIFEST.tsv"}
    assert on_disk == listed


def test_folder_discovery_finds_each_top_report_once():
    files = find.find_reports(FIXTURES)
    assert {str(p.relative_to(FIXTURES)) for p in files} == {r["saved_path"] for r in _rows()}


def _fixture(name_part: str, filename: str) -> Path:
    hits = [p for p in FIXTURES.rglob(filename) if name_part in str(p)]
    assert len(hits) == 1, hits
    return hits[0]


def test_manifest_notes_csynth_details():
    # Vivado HLS dataflow: interval also as <DataflowPipelineThroughput><range>; BRAM 285 of 280 is flagged
    chi = find.parse_file(_fixture("ChiRuiChen", "myproject_csynth.xml"))
    assert chi["details"]["dataflow_throughput"] == [4625, 95949]
    assert chi["details"]["dsp_tag"] == "DSP48E"
    assert chi["details"]["latency_avg_cycles"] == 96014
    assert chi["utilization_pct"]["BRAM_18K"] == pytest.approx(101.79, abs=0.01)
    assert any("over 100%" in f and "BRAM_18K" in f for f in chi["flags"])
    # the text twin gives the same numbers, and its rounded Utilization row agrees
    rpt = find.parse_file(_fixture("ChiRuiChen", "myproject_csynth.rpt"))
    for k in (
        "latency_best_cycles",
        "latency_worst_cycles",
        "interval_min",
        "interval_max",
        "resources",
        "available",
        "clock_estimated_ns",
        "clock_target_ns",
        "part",
        "top",
    ):
        assert rpt[k] == chi[k], k
    assert rpt["details"]["utilization_pct_reported"]["BRAM_18K"] == 101
    assert rpt["details"]["clock_uncertainty_ns"] == 0.62
    # Vitis 2023.1: plain-number DataflowPipelineThroughput, <DSP> tag
    sp = find.parse_file(_fixture("SpAllen", "myproject_csynth.xml"))
    assert sp["details"]["dataflow_throughput"] == [578, 578]
    assert sp["details"]["dsp_tag"] == "DSP" and sp["tool"] == "Vitis HLS"
    assert sp["flags"] == []
    # YanLunHuang: best != worst latency
    yl = find.parse_file(_fixture("YanLunHuang", "myproject_csynth.xml"))
    assert yl["details"]["latency_avg_cycles"] == 1268
    assert yl["latency_worst_ns"] == pytest.approx(2293 * 3.770)


def test_manifest_notes_mha_vitis_rpt_slr_rows_and_flags():
    xml = find.parse_file(_fixture("keras_mha_Vitis", "myproject_csynth.xml"))
    rpt = find.parse_file(_fixture("keras_mha_Vitis", "myproject_csynth.rpt"))
    # the SLR rows are per-SLR, the part is the whole-device "Available" row
    assert (
        rpt["available"]
        == xml["available"]
        == {"LUT": 1728000, "FF": 3456000, "DSP": 12288, "BRAM_18K": 5376, "URAM": 1280}
    )
    assert rpt["details"]["available_slr"]["LUT"] == 432000
    assert rpt["details"]["solution"].endswith("(Vivado IP Flow Target)")
    assert rpt["utilization_pct"]["BRAM_18K"] == pytest.approx(580.36, abs=0.01)
    assert rpt["utilization_pct"]["LUT"] == pytest.approx(239.29, abs=0.01)
    assert rpt["details"]["utilization_pct_reported"]["BRAM_18K"] == 580
    for rec in (xml, rpt):
        over = [f for f in rec["flags"] if f.startswith("over 100%")]
        assert over and all(k in over[0] for k in ("LUT", "DSP", "BRAM_18K")) and "FF" not in over[0]
        assert rec["timing_met"] is True and rec["fmax_mhz"] == pytest.approx(1000 / 3.649, abs=0.01)


def test_manifest_notes_vivado_synth():
    rec = find.parse_file(_fixture("keras_mha_Vitis", "vivado_synth.rpt"))
    assert rec["utilization_pct"]["LUT"] == pytest.approx(370.70, abs=0.01)
    assert rec["details"]["util_pct_reported"]["LUT"] == 370.70
    assert rec["available"]["BRAM_18K"] == 5376 and rec["available"]["URAM"] == 1280
    assert rec["details"]["design_state"] == "Optimized"
    assert rec["timing_met"] is None  # a utilization report says nothing about timing


def test_manifest_notes_cosim_layouts():
    old = find.parse_file(_fixture("YanLunHuang", "myproject_cosim.rpt"))
    assert old["cosim_status"] == "Pass" and old["details"]["layout"].startswith("vivado_hls")
    assert old["details"]["simulation_tool"] == "xsim"
    assert old["details"]["latency_avg_cycles"] == 965 and old["interval_min"] is None
    new = find.parse_file(_fixture("SpAllen", "myproject_cosim.rpt"))
    assert new["cosim_status"] == "Fail" and new["details"]["layout"].startswith("vitis")
    assert new["details"]["simulation_tool"] is None
    assert "cosim failed" in new["flags"]
    assert new["details"]["rtl_status"] == {"VHDL": "NA", "Verilog": "Fail"}


def test_manifest_notes_logs():
    viv = find.parse_file(_fixture("YanLunHuang", "vivado_hls.log"))
    assert viv["errors"] == [] and viv["cosim_status"] == "Pass"
    assert viv["details"]["phases_completed"] == ["csim", "csynth", "cosim", "export"]
    assert viv["details"]["complete"] is True and viv["timing_met"] is True
    vit = find.parse_file(_fixture("keras_mha_Vivado", "vitis_hls.log"))
    assert vit["errors"] == [
        "ERROR: [HLS 200-642] The 'config_array_partition -maximum_size' command is not supported."
    ]
    assert vit["cosim_status"] == "Pass"
    assert "vsynth" not in vit["details"]["phases_completed"] and "csynth" in vit["details"]["phases_completed"]
