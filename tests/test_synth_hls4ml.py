"""hwflow synth on a project written by hls4ml 1.3.0 itself (both backends), with the fake vendor tool."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwflow import synth as S

HERE = Path(__file__).resolve().parent
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hls_reports"
XML = (
    FIXTURES
    / "rianbrooksflynn__transformer-synthesis"
    / "hls4ml_projects"
    / "keras_mha_Vitis"
    / "myproject_prj"
    / "solution1"
    / "syn"
    / "report"
    / "myproject_csynth.xml"
)

WRITE = """
import sys, hls4ml, keras
out, backend = sys.argv[1], sys.argv[2]
m = keras.Sequential([keras.layers.Dense(4, input_shape=(8,), activation='relu')])
cfg = hls4ml.utils.config_from_keras_model(m, granularity='model', backend=backend)
h = hls4ml.converters.convert_from_keras_model(m, hls_config=cfg, output_dir=out, backend=backend,
                                               part='xcvu13p-flga2577-2-e', clock_period=5)
h.write()
"""


@pytest.mark.slow
@pytest.mark.skipif(not XML.is_file(), reason=f"report fixtures absent ({FIXTURES})")
@pytest.mark.parametrize("backend,tool", [("Vitis", "vitis-run"), ("Vivado", "vivado_hls")])
def test_synth_on_real_hls4ml_project(tmp_path, monkeypatch, backend, tool):
    root = tmp_path / "proj"
    (root / "models").mkdir(parents=True)
    (root / "models" / "tiny.yaml").write_text(
        f"name: tiny\ndata: {{kind: jets}}\nmodel: {{kind: transformer}}\nhls: {{backend: {backend}}}\nsynth: "
        f"{{timeout_s: 120}}\n"
    )
    fw = root / "firmware" / "tiny"
    r = subprocess.run([sys.executable, "-c", WRITE, str(fw), backend], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    argv_file = tmp_path / "argv.jsonl"
    monkeypatch.setenv("HWFLOW_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{HERE / 'fake_tools'}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_HLS_ARGV_FILE", str(argv_file))
    monkeypatch.setenv("FAKE_HLS_CSYNTH", str(XML))
    res = S.synth("tiny", echo=io.StringIO())
    call = json.loads(argv_file.read_text().splitlines()[0])
    assert call["tool"] == tool and call["opts"]["synth"] == 1 and call["opts"]["csim"] == 0
    assert res["project"] == "myproject" and res["summary"]["hls"]["latency_worst_cycles"] == 113
    assert json.loads((root / "reports" / "tiny" / "synth.json").read_text())["status"] == "ok"
