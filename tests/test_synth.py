"""hwflow synth without vendor tools: command construction, detection, failure paths, fake-tool end to end."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from hwflow import synth as S
from hwflow.cli import main as cli_main
from hwflow.util import HwflowError

FAKE_TOOLS = Path(__file__).resolve().parent / "fake_tools"
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hls_reports"
MHA = FIXTURES / "rianbrooksflynn__transformer-synthesis" / "hls4ml_projects" / "keras_mha_Vitis"
MHA_XML = MHA / "myproject_prj" / "solution1" / "syn" / "report" / "myproject_csynth.xml"
MHA_VSYNTH = MHA / "vivado_synth.rpt"
COSIM_PASS = (
    FIXTURES / "YanLunHuang__conv2d_test" / "myproject_prj" / "solution1" / "sim" / "report" / "myproject_cosim.rpt"
)
COSIM_FAIL = (
    FIXTURES
    / "SpAllen0726__HG-DREAM-Pulse-Detection-Project"
    / "HLS_models"
    / "myproject_prj"
    / "solution1"
    / "sim"
    / "report"
    / "myproject_cosim.rpt"
)
needs_fixtures = pytest.mark.skipif(not MHA_XML.is_file(), reason=f"report fixtures absent ({FIXTURES})")

VITIS_BUILD_PRJ = """#################
#    HLS4ML
#################

set tcldir [file dirname [info script]]
source [file join $tcldir project.tcl]
source [file join $tcldir build_opt.tcl]

open_project ${project_name}_prj
set_top ${project_name}
if {$opt(synth)} {
    csynth_design
}
exit
"""
VIVADO_BUILD_PRJ = """#################
#    HLS4ML
#################
array set opt {
    reset      0
    csim       1
    synth      1
    cosim      1
    validation 1
    export     0
    vsynth     0
    fifo_opt   0
}

set tcldir [file dirname [info script]]
source [file join $tcldir project.tcl]

foreach arg $::argv {
    foreach o [lsort [array names opt]] {
        regexp "$o=+(\\\\w+)" $arg unused opt($o)
    }
}
exit
"""


def make_project(
    root: Path,
    name: str = "tiny",
    backend: str = "Vitis",
    part: str = "xcvu13p-flga2577-2-e",
    clock: float = 5,
    card_extra: str = "",
) -> Path:
    """Write models/<name>.yaml and a minimal hls4ml project in firmware/<name>/ as hls4ml writes it."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "models" / f"{name}.yaml").write_text(
        f"name: {name}\ndata: {{kind: jets}}\nmodel: {{kind: transformer}}\n"
        f"hls: {{backend: {backend}, part: {part}, clock_period: {clock}}}\n{card_extra}"
    )
    fw = root / "firmware" / name
    (fw / "firmware").mkdir(parents=True)
    (fw / "firmware" / "myproject.cpp").write_text("// generated\n")
    (fw / "build_prj.tcl").write_text(VITIS_BUILD_PRJ if backend == "Vitis" else VIVADO_BUILD_PRJ)
    (fw / "project.tcl").write_text(
        f'variable project_name\nset project_name "myproject"\nvariable backend\nset backend "{backend.lower()}"\n'
        f'variable part\nset part "{part}"\nvariable clock_period\nset clock_period {clock}\n'
        'variable clock_uncertainty\nset clock_uncertainty 12.5%\nvariable version\nset version "1.0.0"\n'
        "variable maximum_size\nset maximum_size 4096\n"
    )
    (fw / "hls4ml_config.yml").write_text(
        f"Backend: {backend}\nClockPeriod: {clock}\nHLSConfig:\n  Model:\n    Precision:\n      default: fixed<16,6>\n"
        "    ReuseFactor: 1\n    Strategy: Latency\nIOType: io_parallel\nInputShape: !!python/tuple\n- 16\n- 4\n"
        f"KerasModel: !keras_model '{fw}/keras_model.keras'\nOutputDir: {fw}\nPart: {part}\n"
        "ProjectName: myproject\nStamp: 5f3e1a2b\nVersion: 1.0.0\nWriterConfig:\n  Namespace: null\n  WriteTar: false\n"
        "  WriteWeightsTxt: true\n"
    )
    return fw


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "proj"
    r.mkdir()
    monkeypatch.setenv("HWFLOW_ROOT", str(r))
    return r


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    """Put only the fake vendor tools (plus the system basics to run them) on PATH."""
    argv_file = tmp_path / "argv.jsonl"
    monkeypatch.setenv("PATH", f"{FAKE_TOOLS}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_HLS_ARGV_FILE", str(argv_file))
    monkeypatch.setenv("FAKE_HLS_CSYNTH", str(MHA_XML))
    monkeypatch.setenv("FAKE_HLS_COSIM", str(COSIM_PASS))
    monkeypatch.setenv("FAKE_HLS_VSYNTH", str(MHA_VSYNTH))
    monkeypatch.delenv("FAKE_HLS_MODE", raising=False)
    return argv_file


@pytest.fixture
def no_tools(tmp_path, monkeypatch):
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


# ---------------------------------------------------------------- command construction and detection


def test_build_opt_tcl_is_what_hls4ml_vitis_backend_writes():
    opts = S.build_options({"csynth": True, "cosim": True, "vsynth": False, "export": False}, {})
    assert opts == {
        "reset": 0,
        "csim": 0,
        "synth": 1,
        "cosim": 1,
        "validation": 0,
        "export": 0,
        "vsynth": 0,
        "fifo_opt": 0,
    }
    # byte-for-byte the format of hls4ml 1.3.0 VitisBackend.build
    assert S.build_opt_tcl(opts) == (
        "array set opt {\n    reset      0\n    csim       0\n    synth      1\n    cosim      1\n"
        "    validation 0\n    export     0\n    vsynth     0\n    fifo_opt   0\n}\n"
    )


def test_build_command_per_tool():
    opts = S.build_options({"csynth": True, "cosim": False, "vsynth": True, "export": False}, {"reset": True})
    assert S.build_command("/opt/x/vitis-run", opts) == ["/opt/x/vitis-run", "--tcl", "build_prj.tcl", "--mode", "hls"]
    assert S.build_command("vitis_hls", opts) == ["vitis_hls", "-f", "build_prj.tcl"]
    assert S.build_command("vivado_hls", opts) == [
        "vivado_hls",
        "-f",
        "build_prj.tcl",
        "reset=1 csim=0 synth=1 cosim=0 validation=0 export=0 vsynth=1 fifo_opt=0",
    ]
    with pytest.raises(HwflowError, match="unknown HLS executable"):
        S.build_command("quartus_sh", opts)


def test_cli_overrides_beat_the_card():
    card = {"csynth": True, "cosim": True, "vsynth": True, "export": True}
    o = S.build_options(card, {"cosim": False, "export": None, "vsynth": False})
    assert (o["synth"], o["cosim"], o["export"], o["vsynth"]) == (1, 0, 1, 0)


def test_find_tool_prefers_vitis_run_then_vitis_hls(tmp_path, monkeypatch):
    b = tmp_path / "bin"
    b.mkdir()
    for n in ("vitis_hls", "vitis-run"):
        (b / n).write_text("#!/bin/sh\n")
        (b / n).chmod(0o755)
    monkeypatch.setenv("PATH", str(b))
    assert S.find_tool("Vitis") == ("vitis-run", str(b / "vitis-run"))
    (b / "vitis-run").unlink()
    assert S.find_tool("Vitis") == ("vitis_hls", str(b / "vitis_hls"))
    with pytest.raises(HwflowError, match=r"Vivado HLS not found on PATH .*set hls.backend: Vitis"):
        S.find_tool("Vivado")


def test_absent_tool_message(no_tools):
    with pytest.raises(HwflowError) as e:
        S.find_tool("Vitis")
    assert str(e.value) == (
        "Vitis HLS not found on PATH (looked for vitis-run, vitis_hls): "
        "install it or run `make report` on existing reports"
    )


def test_cli_without_vendor_tools_fails_clearly(root, no_tools, capsys):
    make_project(root)
    assert cli_main(["synth", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "Vitis HLS not found on PATH" in err and "make report" in err
    assert not (root / "reports" / "tiny" / "synth.json").exists()


def test_missing_firmware_tells_to_run_make_firmware(root, no_tools):
    make_project(root)
    import shutil

    shutil.rmtree(root / "firmware" / "tiny")
    with pytest.raises(HwflowError, match=r"run `make firmware MODEL=tiny` first"):
        S.synth("tiny")


def test_stale_firmware_is_refused(root, no_tools):
    make_project(root)
    card = (root / "models" / "tiny.yaml").read_text().replace("clock_period: 5", "clock_period: 4")
    (root / "models" / "tiny.yaml").write_text(card)
    with pytest.raises(
        HwflowError,
        match=r"^firmware/tiny was generated for a 5 ns clock but the card says 4 ns: "
        r"rerun `make firmware MODEL=tiny`$",
    ):
        S.synth("tiny")


def test_backend_mismatch_is_refused(root, no_tools):
    make_project(root, backend="Vivado")
    card = (root / "models" / "tiny.yaml").read_text().replace("backend: Vivado", "backend: Vitis")
    (root / "models" / "tiny.yaml").write_text(card)
    with pytest.raises(HwflowError, match="written for the Vivado backend but the card says hls.backend: Vitis"):
        S.synth("tiny")


def test_dry_run_writes_nothing(root, no_tools):
    fw = make_project(root)
    before = sorted(p.name for p in fw.iterdir())
    buf = io.StringIO()
    plan = S.synth("tiny", overrides={"cosim": True}, dry_run=True, echo=buf)
    assert plan["tool_found"] is False and plan["command"][1:] == ["--tcl", "build_prj.tcl", "--mode", "hls"]
    assert plan["options"]["cosim"] == 1 and plan["timeout_s"] == 6 * 3600
    assert "NOT FOUND" in buf.getvalue() and "cosim      1" in buf.getvalue()
    assert sorted(p.name for p in fw.iterdir()) == before
    assert not (root / "reports").exists()


# ---------------------------------------------------------------- end to end with the fake tool


@needs_fixtures
def test_fake_vitis_end_to_end(root, fake_path, capsys):
    fw = make_project(root, card_extra="synth: {cosim: true, vsynth: true, timeout_s: 120}\n")
    (root / "reports" / "tiny").mkdir(parents=True)
    (root / "reports" / "tiny" / "synth.json").write_text('{"old": true}')
    assert cli_main(["synth", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "Vitis HLS - High-Level Synthesis" in out  # the tool log streams to the terminal
    call = [json.loads(ln) for ln in fake_path.read_text().splitlines()]
    assert len(call) == 1 and call[0]["tool"] == "vitis-run" and Path(call[0]["cwd"]) == fw
    assert call[0]["opts"] == {
        "reset": 0,
        "csim": 0,
        "synth": 1,
        "cosim": 1,
        "validation": 0,
        "export": 0,
        "vsynth": 1,
        "fifo_opt": 0,
    }
    log = (fw / "hwflow_synth.log").read_text()
    assert "Estimated Fmax: 274.05 MHz" in log and "exit=0" in log
    res = json.loads((root / "reports" / "tiny" / "synth.json").read_text())
    assert json.loads((root / "reports" / "tiny" / "synth.previous.json").read_text()) == {"old": True}
    assert res["status"] == "ok" and res["tool"] == "vitis-run" and res["exit_code"] == 0
    kinds = sorted(r["kind"] for r in res["reports"])
    assert kinds == ["cosim", "csynth_rpt", "csynth_xml", "log", "vivado_synth"]
    h = res["summary"]["hls"]
    assert (h["latency_worst_cycles"], h["interval_max"], h["resources"]["LUT"], h["resources"]["DSP"]) == (
        113,
        114,
        4134866,
        13676,
    )
    assert h["clock_estimated_ns"] == 3.649 and h["timing_met"] is True
    assert res["summary"]["vivado_synth"]["resources"]["BRAM_18K"] == 2720
    assert res["summary"]["cosim_status"] == "Pass"
    assert res["card_hls"]["part"] == "xcvu13p-flga2577-2-e"
    assert not [p for p in (root / "reports" / "tiny").iterdir() if p.name.startswith(".")]  # no temp files left


@needs_fixtures
def test_fake_vivado_hls_end_to_end(root, fake_path):
    make_project(root, backend="Vivado", card_extra="synth: {timeout_s: 120}\n")
    res = S.synth("tiny", echo=io.StringIO())
    call = json.loads(fake_path.read_text().splitlines()[0])
    assert call["tool"] == "vivado_hls"
    assert call["argv"] == [
        "-f",
        "build_prj.tcl",
        "reset=0 csim=0 synth=1 cosim=0 validation=0 export=0 vsynth=0 fifo_opt=0",
    ]
    assert call["opts"]["cosim"] == 0 and call["opts"]["synth"] == 1
    assert res["summary"]["hls"]["resources"]["FF"] == 519152
    assert not (root / "firmware" / "tiny" / "build_opt.tcl").exists()  # Vivado HLS takes its options on argv


@needs_fixtures
def test_cosim_failure_is_reported_not_hidden(root, fake_path, monkeypatch):
    make_project(root, card_extra="synth: {cosim: true}\n")
    monkeypatch.setenv("FAKE_HLS_COSIM", str(COSIM_FAIL))
    assert cli_main(["synth", "tiny", "--timeout", "60"]) == 1
    res = json.loads((root / "reports" / "tiny" / "synth.json").read_text())
    assert res["status"] == "cosim_failed" and "cosim failed" in res["summary"]["flags"]


@needs_fixtures
def test_tool_error_exit_leaves_no_report(root, fake_path, monkeypatch):
    make_project(root)
    (root / "reports" / "tiny").mkdir(parents=True)
    (root / "reports" / "tiny" / "synth.json").write_text('{"old": true}')
    monkeypatch.setenv("FAKE_HLS_MODE", "fail")
    with pytest.raises(HwflowError) as e:
        S.synth("tiny", echo=io.StringIO())
    msg = str(e.value)
    assert "vitis-run failed with exit code 1" in msg and "ERROR: [HLS 200-70] Pre-synthesis failed." in msg
    assert "firmware/tiny/hwflow_synth.log" in msg
    assert not (root / "reports" / "tiny" / "synth.json").exists()
    assert (root / "reports" / "tiny" / "synth.previous.json").exists()


@needs_fixtures
def test_timeout_kills_the_tool_and_writes_nothing(root, fake_path, monkeypatch):
    make_project(root)
    monkeypatch.setenv("FAKE_HLS_MODE", "hang")
    t0 = time.time()
    with pytest.raises(HwflowError, match=r"timed out after 1.5 s and was stopped; no report was written"):
        S.synth("tiny", timeout_s=1.5, echo=io.StringIO())
    assert time.time() - t0 < 30
    assert "TIMEOUT" in (root / "firmware" / "tiny" / "hwflow_synth.log").read_text()
    assert not (root / "reports" / "tiny" / "synth.json").exists()


@needs_fixtures
def test_zero_exit_without_fresh_report_is_a_failure(root, fake_path, monkeypatch):
    fw = make_project(root)
    monkeypatch.setenv("FAKE_HLS_MODE", "noreport")
    with pytest.raises(HwflowError, match=r"did not write a fresh .*myproject_csynth.xml \(missing\)"):
        S.synth("tiny", echo=io.StringIO())
    # an old report from an earlier run is not taken for this run's result
    old = fw / "myproject_prj" / "solution1" / "syn" / "report" / "myproject_csynth.xml"
    old.parent.mkdir(parents=True)
    old.write_bytes(MHA_XML.read_bytes())
    past = time.time() - 3600
    os.utime(old, (past, past))
    with pytest.raises(HwflowError, match=r"older than this run"):
        S.synth("tiny", echo=io.StringIO())
    assert not (root / "reports" / "tiny" / "synth.json").exists()


@needs_fixtures
def test_truncated_report_is_an_error_naming_the_file(root, fake_path, monkeypatch):
    make_project(root)
    monkeypatch.setenv("FAKE_HLS_MODE", "truncated")
    with pytest.raises(HwflowError, match=r"myproject_csynth.xml: not well-formed XML .*truncated"):
        S.synth("tiny", echo=io.StringIO())
    assert not (root / "reports" / "tiny" / "synth.json").exists()


def test_nothing_to_run(root, no_tools):
    make_project(root)
    with pytest.raises(HwflowError, match="nothing to run"):
        S.synth("tiny", overrides={"csynth": False})


def test_cosim_without_csynth_results(root, no_tools):
    make_project(root)
    with pytest.raises(HwflowError, match=r"need C synthesis results .* add --csynth"):
        S.synth("tiny", overrides={"csynth": False, "cosim": True})


@needs_fixtures
def test_reuse_factor_mismatch_is_warned_and_recorded(root, fake_path):
    make_project(root, card_extra="synth: {timeout_s: 60}\n")
    card = (root / "models" / "tiny.yaml").read_text().replace("hls: {", "hls: {reuse_factor: 4, ")
    (root / "models" / "tiny.yaml").write_text(card)
    buf = io.StringIO()
    res = S.synth("tiny", echo=buf)
    assert "Model ReuseFactor 1 but the card says hls.reuse_factor: 4" in buf.getvalue()
    assert res["warnings"] and res["card_hls"]["reuse_factor"] == 4


def test_model_level_hls_config_is_read(tmp_path):
    fw = make_project(tmp_path)
    assert S._model_hls_config(fw) == {"ReuseFactor": "1", "Strategy": "Latency"}
    assert S._read_yml(fw)["Backend"] == "Vitis" and "InputShape" not in S._read_yml(fw)


@needs_fixtures
def test_synth_accepts_a_loaded_card_with_overrides(root, fake_path):
    from hwflow.config import load_card

    make_project(root)
    card = load_card("tiny", overrides={"synth": {"cosim": True, "timeout_s": 60}})
    res = S.synth(card, echo=io.StringIO())
    assert res["options"]["cosim"] == 1 and res["summary"]["cosim"]["status"] == "Pass" and res["timeout_s"] == 60


@needs_fixtures
def test_cosim_only_run_reuses_the_earlier_csynth_explicitly(root, fake_path):
    make_project(root, card_extra="synth: {timeout_s: 60}\n")
    S.synth("tiny", echo=io.StringIO())
    res = S.synth("tiny", overrides={"csynth": False, "cosim": True}, echo=io.StringIO())
    call = json.loads(fake_path.read_text().splitlines()[-1])
    assert call["opts"]["synth"] == 0 and call["opts"]["cosim"] == 1
    xml = [r for r in res["reports"] if r["kind"] == "csynth_xml"]
    assert len(xml) == 1 and xml[0]["details"]["from_earlier_run"] is True
    assert res["summary"]["hls"]["latency_worst_cycles"] == 113 and res["summary"]["cosim_status"] == "Pass"
