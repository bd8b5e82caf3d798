"""`hwflow report` keeps one design per row: figures of another firmware hash are left out, naming the stage."""

from __future__ import annotations

import json

from hwflow.report import collect as C
from hwflow.report import compare as K
from hwflow.report.schema import CSIM_KEYS, FIRMWARE_KEY


def _project(root, name="m"):
    fw = root / "firmware" / name
    (fw / "firmware" / "weights").mkdir(parents=True)
    (fw / "firmware" / "myproject.cpp").write_text("// the design\n")
    (fw / "firmware" / "weights" / "w2.h").write_text("// weights\n")
    (fw / "myproject_bridge.cpp").write_text("// bridge\n")
    (root / "reports" / name).mkdir(parents=True)
    return fw


def _csim(sha):
    return dict.fromkeys(CSIM_KEYS, 0.5) | {"auc_csim": {"a": 0.9}, "overflow_counts": {}, FIRMWARE_KEY: sha}


def test_row_refuses_figures_of_another_firmware(tmp_path, monkeypatch):
    from hwflow.hls.project import source_sha256

    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    fw = _project(tmp_path)
    now = source_sha256(fw)
    (tmp_path / "reports" / "m" / "csim.json").write_text(json.dumps(_csim(now)))
    rtl = {"n_samples": 10, "bit_exact_fraction_vs_csim": 1.0, "latency_cycles": 9, FIRMWARE_KEY: "0" * 64}
    (tmp_path / "reports" / "m" / "rtl.json").write_text(json.dumps(rtl))
    row = C.collect(tmp_path)["models"][0]
    assert row["firmware_sha256"] == now and row["accuracy"][FIRMWARE_KEY] == now
    assert row["open_rtl"] is None  # the RTL figures belong to another design: not in this row
    why = row["firmware_mismatch"]["rtl.json"]
    assert "rerun `make rtl MODEL=m`" in why and "000000000000" in why
    md = C.to_markdown(C.collect(tmp_path))
    assert "Left out: figures of another firmware" in md and "rerun `make rtl MODEL=m`" in md
    # the firmware changes: now the C simulation is the stale one
    (fw / "firmware" / "weights" / "w2.h").write_text("// retrained weights\n")
    row = C.collect(tmp_path)["models"][0]
    assert row["accuracy"] is None and "rerun `make csim MODEL=m`" in row["accuracy_note"]


def test_csim_key_set_is_shared():
    import hwflow.verify as V

    assert V.REQUIRED_KEYS is CSIM_KEYS
    m = K.metrics(
        {
            "view": {"hls": None, "vivado_synth": None, "cosim": None, "cosim_status": None},
            "accuracy": {**_csim("a" * 64)},
        }
    )
    assert {f"accuracy.{k}" for k in ("accuracy_csim", "softmax_argmax_flips", FIRMWARE_KEY)} <= set(m)
    assert "accuracy.auc_csim" not in m  # per-class dicts stay in csim.md
