"""A standalone g++ harness: compile one hwflow C++ function against hls4ml's ap_types and run it on numpy data.

Used by the bit-exactness tests (much faster than a whole hls4ml project) and handy for debugging
a single layer: the harness reads rows of doubles on stdin and prints the outputs as exact doubles.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..util import HwflowError

HERE = Path(__file__).resolve().parent

_MAIN = r"""
#include <cstdio>
#include <cstdlib>
#include "ap_fixed.h"
#include "nnet_utils/nnet_common.h"
{includes}

{prelude}

int main() {{
    int n = 0;
    if (std::scanf("%d", &n) != 1) return 1;
    for (int s = 0; s < n; s++) {{
        static {in_t} in[{n_in}];
        static {out_t} out[{n_out}];
        for (int i = 0; i < {n_in}; i++) {{ double v; if (std::scanf("%lf", &v) != 1) return 2; in[i] = v; }}
        {call}
        for (int i = 0; i < {n_out}; i++) std::printf("%.17g%c", (double)out[i], i + 1 == {n_out} ? '\n' : ' ');
    }}
    return 0;
}}
"""


def hls4ml_include_dirs() -> list[Path]:
    """Return the include directories of hls4ml's ap_types and nnet_utils plus hwflow's own headers."""
    import importlib.util

    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.origin:
        raise HwflowError("hls4ml is not installed: run `make` (or pip install hls4ml==1.3.0) in the project venv")
    tpl = Path(spec.origin).parent / "templates" / "vivado"
    return [tpl / "ap_types", tpl, tpl / "nnet_utils", HERE]


def compiler() -> str:
    """Return the path of g++ or raise a HwflowError saying how to install it."""
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if not cxx:
        raise HwflowError("g++ not found: install a C++ compiler (Debian: apt-get install -y g++) or set CXX")
    return cxx


def build(
    includes: list[str],
    prelude: str,
    call: str,
    in_t: str,
    out_t: str,
    n_in: int,
    n_out: int,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Return the path of a compiled harness executable (cached by source hash)."""
    src = _MAIN.format(
        includes="\n".join(f'#include "{h}"' for h in includes),
        prelude=prelude,
        call=call,
        in_t=in_t,
        out_t=out_t,
        n_in=n_in,
        n_out=n_out,
    )
    headers = "".join(p.read_text() for p in sorted((HERE / "nnet_utils").glob("hwflow_*.h")))
    key = hashlib.sha256((src + headers).encode()).hexdigest()[:16]
    cache = Path(cache_dir or Path(tempfile.gettempdir()) / f"hwflow_harness_{os.getuid()}")
    cache.mkdir(parents=True, exist_ok=True)
    exe = cache / f"h_{key}"
    if exe.exists():
        return exe
    cpp = cache / f"h_{key}.cpp"
    cpp.write_text(src)
    cmd = [
        compiler(),
        "-O1",
        "-std=c++14",
        "-w",
        *[f"-I{d}" for d in hls4ml_include_dirs()],
        str(cpp),
        "-o",
        str(exe) + ".tmp",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise HwflowError(f"harness compile failed ({cpp}): {r.stderr[-3000:]}")
    os.replace(str(exe) + ".tmp", exe)
    return exe


def run(exe: Path, x) -> np.ndarray:
    """Run a harness on rows of ``x`` (2-D) and return its outputs as a float64 array."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    text = f"{len(x)}\n" + "\n".join(" ".join(repr(float(v)) for v in row) for row in x) + "\n"
    r = subprocess.run([str(exe)], input=text, capture_output=True, text=True)
    if r.returncode != 0:
        raise HwflowError(f"harness {exe} failed with code {r.returncode}: {r.stderr[-2000:]}")
    return np.array([[float(v) for v in line.split()] for line in r.stdout.strip().splitlines()], np.float64)
