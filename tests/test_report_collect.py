"""`hwflow report` (collect), `hwflow report compare` and `hwflow report parse` on a temporary project root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwflow.cli import main as cli_main
from hwflow.report import collect as C
from hwflow.report import compare as K
from hwflow.report import find
from hwflow.report.schema import RECORD_KEYS

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hls_reports"
pytestmark = pytest.mark.skipif(
    not (FIXTURES / "MANIFEST.tsv").is_file(), reason=f"report fixtures absent ({FIXTURES})"
)


def _fx(part: str, name: str) -> Path:
    return next(p for p in FIXTURES.rglob(name) if part in str(p))


CSIM = {
    "n_samples": 500,
    "accuracy_float": 0.7712,
    "accuracy_qkeras": 0.7654,
    "accuracy_csim": 0.7611,
    "argmax_agreement_vs_qkeras": 0.9871,
    "argmax_agreement_vs_float": 0.9533,
    "max_abs_error_vs_qkeras": 0.03125,
    "auc_float": {"g": 0.91, "q": 0.88},
    "auc_qkeras": {"g": 0.905, "q": 0.874},
    "auc_csim": {"g": 0.9, "q": 0.87},
    "auc_drop_max_vs_float": 0.01,
    "overflow_counts": {"dense": 3, "softmax": 0},
    "softmax_argmax_flips": 7,
}
RTL = {
    "n_samples": 200,
    "bit_exact_fraction_vs_csim": 1.0,
    "latency_cycles": 41,
    "interval": 1,
    "resources": {"LUT": 98765, "FF": 4321, "DSP": 0, "BRAM_18K": 0},
    "synthesizer": "yosys 0.33",
    "part": "xcvu13p-flga2577-2-e",
}


def _synth_json(dst: Path, files: list[Path], reuse: int = 1) -> Path:
    recs = [find.parse_file(f) for f in files]
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "synth.json").write_text(
        json.dumps(
            {
                "model": dst.name,
                "status": "ok",
                "finished_utc": "2026-11-29T00:00:00Z",
                "card_hls": {"reuse_factor": reuse, "strategy": "Latency"},
                "reports": recs,
            }
        )
    )
    return dst / "synth.json"


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "proj"
    old = time.time() - 3600
    # alpha: synthesized by hwflow synth (MHA Vitis reports + cosim + Vivado synthesis), with csim and open-RTL results
    fw = r / "firmware" / "alpha" / "firmware"
    fw.mkdir(parents=True)
    (fw / "myproject.cpp").write_text("//\n")
    os.utime(fw / "myproject.cpp", (old, old))
    mha = _fx("keras_mha_Vitis", "myproject_csynth.xml")
    _synth_json(
        r / "reports" / "alpha",
        [
            mha,
            mha.with_suffix(".rpt"),
            _fx("YanLunHuang", "myproject_cosim.rpt"),
            _fx("keras_mha_Vitis", "vivado_synth.rpt"),
        ],
    )
    (r / "reports" / "alpha" / "csim.json").write_text(json.dumps(CSIM))
    (r / "reports" / "alpha" / "rtl.json").write_text(json.dumps(RTL))
    # beta: no vendor tools were available; only csim and open RTL
    (r / "firmware" / "beta").mkdir(parents=True)
    (r / "reports" / "beta").mkdir(parents=True)
    (r / "reports" / "beta" / "csim.json").write_text(json.dumps(CSIM | {"accuracy_csim": 0.5}))
    (r / "reports" / "beta" / "rtl.json").write_text(json.dumps(RTL | {"latency_cycles": 17}))
    # gamma: vendor reports sitting in the hls4ml project (tool run by hand), no synth.json
    g = r / "firmware" / "gamma"
    rep = g / "myproject_prj" / "solution1" / "syn" / "report"
    rep.mkdir(parents=True)
    (g / "project.tcl").write_text(
        'variable project_name\nset project_name "myproject"\nvariable backend\nset backend "vivado"\n'
    )
    shutil.copyfile(_fx("SpAllen", "myproject_csynth.xml"), rep / "myproject_csynth.xml")
    # delta: a corrupt report
    d = r / "firmware" / "delta" / "myproject_prj" / "solution1" / "syn" / "report"
    d.mkdir(parents=True)
    (d / "myproject_csynth.xml").write_text("<profile><UserAssignments>")
    monkeypatch.setenv("HWFLOW_ROOT", str(r))
    return r


def test_collect_summary_numbers_come_from_their_sources(root, capsys):
    assert cli_main(["report"]) == 0
    s = json.loads((root / "reports" / "summary.json").read_text())
    rows = {m["model"]: m for m in s["models"]}
    assert sorted(rows) == ["alpha", "beta", "delta", "gamma"]
    a = rows["alpha"]
    h = a["vendor"]["hls"]
    assert h["source"].endswith("myproject_csynth.xml")  # the XML is preferred over its text twin
    assert (h["latency_worst_cycles"], h["interval_max"], h["resources"]["LUT"], h["clock_estimated_ns"]) == (
        113,
        114,
        4134866,
        3.649,
    )
    assert h["latency_worst_ns"] == pytest.approx(113 * 3.649, abs=1e-3)
    assert h["utilization_pct"]["BRAM_18K"] == pytest.approx(580.36, abs=0.01)
    assert a["vendor"]["vivado_synth"]["resources"]["LUT"] == 6405638
    assert a["vendor"]["cosim_status"] == "Pass"
    assert a["vendor_origin"].startswith("reports/alpha/synth.json (hwflow synth")
    assert a["accuracy"] == CSIM  # copied, not recomputed
    assert a["open_rtl"]["label"] == "open RTL: yosys 0.33, UltraScale+ mapping, not Vivado"
    assert a["open_rtl"]["resources"]["LUT"] == 98765
    b = rows["beta"]
    assert b["vendor"] is None and b["vendor_note"].startswith("no vendor synthesis report")
    assert "make synth MODEL=beta" in b["vendor_note"]
    g = rows["gamma"]
    assert g["vendor"]["hls"]["resources"]["LUT"] == 339116 and "not recorded by hwflow synth" in g["vendor_origin"]
    assert g["accuracy"] is None and "make csim MODEL=gamma" in g["accuracy_note"]
    dl = rows["delta"]
    assert dl["vendor"] is None and any("not well-formed XML" in e for e in dl["vendor_errors"])
    assert s["plots"] == ["resources_pct.png", "latency_vs_lut.png"]
    for p in s["plots"]:
        assert (root / "reports" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (root / "reports").iterdir() if p.name.startswith(".")]  # no temp files left
    out = capsys.readouterr()
    assert "beta: no vendor synthesis report" in out.out and "delta: unreadable report" in out.err


def test_markdown_never_passes_open_rtl_numbers_as_vendor_numbers(root):
    assert cli_main(["report"]) == 0
    md = (root / "reports" / "summary.md").read_text()
    vendor_sec = md.split("## Vendor synthesis")[1].split("## Vivado logic synthesis")[0]
    assert "4134866" in vendor_sec and "alpha" in vendor_sec
    assert "98765" not in vendor_sec  # open-RTL LUTs only in their own, labelled section
    table_rows = [ln for ln in vendor_sec.splitlines() if ln.startswith("| beta")]
    assert table_rows == []  # beta gets no vendor row...
    assert "**beta**: no vendor synthesis report" in vendor_sec  # ...but a plain statement
    rtl_sec = md.split("## Open RTL flow (not Vivado)")[1]
    assert "open RTL: yosys 0.33, UltraScale+ mapping, not Vivado" in rtl_sec and "98765" in rtl_sec
    assert "over 100% of the part" in vendor_sec
    assert "0.7611" in md and "(mean of 2)" in md


def test_collect_selected_models_and_unknown_model(root):
    s = C.collect(root, ["beta"])
    assert [m["model"] for m in s["models"]] == ["beta"]
    with pytest.raises(
        Exception, match=r"no firmware/ or reports/ folder for zeta: known models are alpha, beta, delta, gamma"
    ):
        C.collect(root, ["zeta"])


def test_stale_synthesis_is_flagged(root):
    src = root / "firmware" / "alpha" / "firmware" / "myproject.cpp"
    future = time.time() + 60
    os.utime(src, (future, future))
    s = C.collect(root, ["alpha"])
    assert any("changed after this synthesis" in f for f in s["models"][0]["vendor"]["flags"])


def test_compare_two_runs(root, tmp_path, capsys):
    b = tmp_path / "runB"
    _synth_json(b, [_fx("SpAllen", "myproject_csynth.xml"), _fx("SpAllen", "myproject_cosim.rpt")], reuse=4)
    (b / "csim.json").write_text(json.dumps(CSIM | {"accuracy_csim": 0.7411}))
    cmp = K.compare(root / "reports" / "alpha", b)
    rows = {r["metric"]: r for r in cmp["rows"]}
    lut = rows["hls.LUT"]
    assert (lut["a"], lut["b"], lut["delta"]) == (4134866, 339116, 339116 - 4134866)
    assert lut["delta_pct"] == pytest.approx(100 * (339116 - 4134866) / 4134866, abs=0.01)
    assert rows["hls.latency_worst_cycles"]["delta"] == 695 - 113
    assert (
        rows["cosim.status"]["a"] == "Pass" and rows["cosim.status"]["b"] == "Fail" and rows["cosim.status"]["changed"]
    )
    assert rows["accuracy.accuracy_csim"]["delta"] == pytest.approx(-0.02)
    assert "vivado_synth.LUT" in rows and rows["vivado_synth.LUT"]["b"] is None
    assert any("different parts" in n for n in cmp["notes"])
    assert (rows["card.reuse_factor"]["a"], rows["card.reuse_factor"]["b"], rows["card.reuse_factor"]["delta"]) == (
        1,
        4,
        3,
    )
    assert not rows["card.strategy"]["changed"]
    assert cli_main(["report", "compare", str(root / "reports" / "alpha"), str(b)]) == 0
    md = capsys.readouterr().out
    assert "| hls.LUT | 4134866 | 339116 | -3795750 | -91.80% |" in md
    out = tmp_path / "cmp.json"
    assert cli_main(["report", "compare", str(root / "reports" / "alpha"), str(b), "--json", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["metric"] == "card.reuse_factor"


def test_compare_accepts_report_files_and_project_folders():
    a = _fx("ChiRuiChen", "myproject_csynth.xml")
    cmp = K.compare(a, a.with_suffix(".rpt"))
    assert all(r["delta"] in (0, None) for r in cmp["rows"]) and not [r for r in cmp["rows"] if r["changed"]]
    cmp = K.compare(FIXTURES / "YanLunHuang__conv2d_test", a)
    assert {r["metric"]: r for r in cmp["rows"]}["hls.DSP"]["delta"] == 118 - 8


def test_parse_cli_json_and_text(capsys):
    folder = FIXTURES / "rianbrooksflynn__transformer-synthesis"
    assert cli_main(["report", "parse", str(folder), "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in recs] == ["csynth_rpt", "csynth_xml", "vivado_synth", "log"]
    assert all(tuple(r) == RECORD_KEYS for r in recs)
    assert cli_main(["report", "parse", str(folder / "hls4ml_projects" / "keras_mha_Vitis" / "vivado_synth.rpt")]) == 0
    text = capsys.readouterr().out
    assert "!! over 100% of the part: LUT 371%" in text and "6405638" in text
    assert cli_main(["report", "parse", str(FIXTURES / "nope.rpt")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_report_import_stays_light():
    code = (
        "import sys, argparse; import hwflow.report, hwflow.synth; "
        "sub = argparse.ArgumentParser().add_subparsers(); hwflow.report.add_cli(sub); hwflow.synth.add_cli(sub); "
        "bad = [m for m in ('matplotlib', 'tensorflow', 'hls4ml', 'numpy', 'qkeras') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # no heavy module at import time (matplotlib only when plotting)


def test_nan_and_unsynthesized_rtl_are_reported_plainly(root):
    csim = CSIM | {
        "auc_csim": {"g": float("nan"), "q": 0.87},
        "auc_drop_max_vs_float": float("nan"),
        "overflow_total": 3,
    }
    (root / "reports" / "beta" / "csim.json").write_text(json.dumps(csim))  # json writes NaN as Python does
    (root / "reports" / "beta" / "rtl.json").write_text(
        json.dumps(
            RTL
            | {
                "resources": None,
                "synthesizer": "not run (--no-yosys or rtl.yosys: false)",
                "simulator": "Verilator 5.020",
            }
        )
    )
    assert cli_main(["report", "--models", "beta"]) == 0

    def strict(c):
        raise AssertionError(f"non-standard JSON constant {c}")

    s = json.loads((root / "reports" / "summary.json").read_text(), parse_constant=strict)
    b = s["models"][0]
    assert b["accuracy"]["auc_csim"] == {"g": None, "q": 0.87} and b["accuracy"]["auc_drop_max_vs_float"] is None
    assert b["open_rtl"]["label"] == "open RTL: Verilator 5.020, resources not synthesized, not Vivado"
    md = (root / "reports" / "summary.md").read_text()
    assert "0.8700 (mean of 1)" in md


def test_parse_reads_a_synth_json_and_a_report_folder(root, capsys):
    assert cli_main(["report", "parse", str(root / "reports" / "alpha"), "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in recs] == ["csynth_xml", "csynth_rpt", "cosim", "vivado_synth"]
    bad = root / "reports" / "bad.json"
    bad.write_text('{"x": 1}')
    assert cli_main(["report", "parse", str(bad)]) == 1
    assert "not a synth.json" in capsys.readouterr().err
