"""A stand-in for Vitis/Vivado HLS used by the tests: behaves like the tool on an hls4ml project.

Called as `<tool> <args...>` through the wrappers vitis-run / vitis_hls / vivado_hls in this folder.
It reads the options the way hls4ml's build_prj.tcl does (build_opt.tcl for Vitis, "k=v" argv for
vivado_hls), prints a real-looking log, and copies real fixture reports into the project's report
locations. Behaviour is steered by environment variables:
  FAKE_HLS_MODE      ok (default) | fail (ERROR + exit 1) | hang (sleep) | noreport (exit 0, writes nothing)
                     | truncated (writes a cut csynth.xml, exit 0)
  FAKE_HLS_CSYNTH    fixture *_csynth.xml to install (its .rpt twin is copied too if it exists)
  FAKE_HLS_COSIM     fixture *_cosim.rpt to install when cosim=1
  FAKE_HLS_VSYNTH    fixture vivado_synth.rpt to install when vsynth=1
  FAKE_HLS_ARGV_FILE append the argv + cwd + options (JSON line) here
"""

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

KEYS = ("reset", "csim", "synth", "cosim", "validation", "export", "vsynth", "fifo_opt")


def options(tool, argv):
    opts = {"reset": 0, "csim": 1, "synth": 1, "cosim": 1, "validation": 1, "export": 0, "vsynth": 0, "fifo_opt": 0}
    if tool in ("vitis-run", "vitis_hls"):
        text = Path("build_opt.tcl").read_text()
        for k in KEYS:
            m = re.search(rf"^\s*{k}\s+(\d)", text, re.M)
            if m:
                opts[k] = int(m.group(1))
    else:
        for arg in argv:
            for k in KEYS:
                m = re.search(rf"{k}=+(\w+)", arg)
                if m:
                    opts[k] = int(m.group(1) in ("1", "True", "true"))
    return opts


def main():
    tool, argv = sys.argv[1], sys.argv[2:]
    mode = os.environ.get("FAKE_HLS_MODE", "ok")
    if tool == "vitis-run" and argv != ["--tcl", "build_prj.tcl", "--mode", "hls"]:
        print(f"ERROR: [vitis-run] unexpected arguments {argv}")
        return 2
    if tool in ("vitis_hls", "vivado_hls") and argv[:2] != ["-f", "build_prj.tcl"]:
        print(f"ERROR: [{tool}] unexpected arguments {argv}")
        return 2
    if not Path("build_prj.tcl").is_file():
        print("ERROR: build_prj.tcl not found")
        return 2
    opts = options(tool, argv)
    if os.environ.get("FAKE_HLS_ARGV_FILE"):
        with open(os.environ["FAKE_HLS_ARGV_FILE"], "a") as f:
            f.write(json.dumps({"tool": tool, "argv": argv, "cwd": os.getcwd(), "opts": opts}) + "\n")
    prj = dict(re.findall(r'^set (\w+) "?([^"\n]*)"?', Path("project.tcl").read_text(), re.M))
    name = prj["project_name"]
    label = (
        "Vivado(TM) HLS - High-Level Synthesis from C, C++ and SystemC v2019.2"
        if tool == "vivado_hls"
        else "Vitis HLS - High-Level Synthesis from C, C++ and OpenCL v2023.2"
    )
    print(f"\n****** {label} (64-bit)", flush=True)
    print(f"INFO: [HLS 200-1510] Running: set_top {name} ")
    print(f"INFO: [HLS 200-1611] Setting target device to '{prj['part']}'")
    print(f"INFO: [SYN 201-201] Setting up clock 'default' with a period of {prj['clock_period']}ns.", flush=True)
    if mode == "hang":
        print("***** C/RTL SYNTHESIS *****", flush=True)
        time.sleep(600)
        return 0
    if mode == "fail":
        print("***** C/RTL SYNTHESIS *****")
        print(
            "ERROR: [HLS 214-194] in function 'myproject': Undefined function nnet::fake (firmware/myproject.cpp:12:3)"
        )
        print("ERROR: [HLS 200-70] Pre-synthesis failed.")
        return 1
    sol = Path(f"{name}_prj") / "solution1"
    if opts["synth"]:
        print("***** C/RTL SYNTHESIS *****")
        if mode != "noreport":
            src = Path(os.environ["FAKE_HLS_CSYNTH"])
            dst = sol / "syn" / "report"
            dst.mkdir(parents=True, exist_ok=True)
            if mode == "truncated":
                (dst / f"{name}_csynth.xml").write_bytes(src.read_bytes()[:900])
            else:
                shutil.copyfile(src, dst / f"{name}_csynth.xml")
                if src.with_suffix(".rpt").exists():
                    shutil.copyfile(src.with_suffix(".rpt"), dst / f"{name}_csynth.rpt")
                (sol / "syn" / "verilog").mkdir(parents=True, exist_ok=True)
        print("INFO: [HLS 200-789] **** Estimated Fmax: 274.05 MHz")
        print("***** C/RTL SYNTHESIS COMPLETED IN 0h0m1s *****")
    if opts["cosim"] and mode != "noreport":
        print("***** C/RTL SIMULATION *****")
        dst = sol / "sim" / "report"
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.environ["FAKE_HLS_COSIM"], dst / f"{name}_cosim.rpt")
        print("***** C/RTL SIMULATION COMPLETED IN 0h0m1s *****")
    if opts["export"] and mode != "noreport":
        print("***** EXPORT IP *****")
        ip = sol / "impl" / "ip"
        ip.mkdir(parents=True, exist_ok=True)
        (ip / "component.xml").write_text("<component/>\n")
        print("***** EXPORT IP COMPLETED IN 0h0m1s *****")
    if opts["vsynth"] and mode != "noreport":
        print("***** VIVADO SYNTHESIS *****")
        shutil.copyfile(os.environ["FAKE_HLS_VSYNTH"], "vivado_synth.rpt")
        print("***** VIVADO SYNTHESIS COMPLETED IN 0h0m1s *****")
    print(f"INFO: [Common 17-206] Exiting {'vivado_hls' if tool == 'vivado_hls' else 'vitis_hls'} at now...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
