"""Serial engine: the neutral graph compiled into a micro-op program for one small fixed datapath.

The edge operating point of the open RTL route (issue 15): instead of one frame's logic per layer
(hwflow.rtl.fold_conv), ONE datapath runs the whole model instruction by instruction, reading weights from ROM and
activations from a RAM. Time is cheap for speech (a 1 s clip may take 10 ms), area is not.

Datapath (``verilog`` writes it; ``emulate`` is its bit-exact Python model, the check that the compiler is right):

- activation RAM (two read ports and a write port), weight ROM (two ports: operand and bias), table
  ROM (two ports: a table entry and its neighbour, or the two exp tables), program ROM;
- one multiply-accumulate lane (``rtl.macs_per_cycle: 1``), a wide accumulator (wraps to the accum_t width), a
  post multiplier (scale constants, exact division by a constant via a magic number), one cast unit (shift, all
  ap_fixed rounding and overflow modes, a second overflow after an added constant);
- table units: sigmoid index (floor + clamp) for swish/GLU, the softmax exp pair, the softmax reciprocal, the
  norm 1/sqrt and the cosFormer normaliser's reciprocal (mantissa taken below the leading one, like the 1/sqrt)
  with their leading-one position and linear interpolation (hwflow/reference/softmax.py, layernorm.py,
  cosformer.py).

Every instruction is a loop nest ``for i0 < n0, i1 < n1: [for i2 < n2: accumulate]; write`` with linear addresses
``base + i0*s0 + i1*s1 (+ i2*s2)`` for each operand (A, B: RAM or ROM, C: bias ROM, D: destination). The
controller issues one inner step per clock into a PIPELINE_DEPTH-stage pipeline (memories, table address unit,
table ROM, multiplier, accumulator, wrap, post multiplier, cast, added constant, written word: every long path cut
into register stages, the multipliers into two registered partial products) and drains it before the next
instruction (fetch, decode): an instruction takes n0*n1*n2 + PIPELINE_DEPTH clocks. No instruction may read a word
it wrote itself (``_check_hazards``). The activation RAM is kept in two copies written together, one per read
port. Tensors keep zero frames around them where a convolution reads outside the clip (hls4ml's 'same' padding).
The clip enters word by word (in_valid/in_ready), the result leaves word by word (out_valid, out_last).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..util import HwflowError
from .export import sub_layer

ROUNDING = {"TRN": 0, "TRN_ZERO": 1, "RND": 2, "RND_ZERO": 3, "RND_INF": 4, "RND_MIN_INF": 5, "RND_CONV": 6}
OVERFLOW = {"WRAP": 0, "SAT": 1, "SAT_ZERO": 2, "SAT_SYM": 3}
# opcodes
HALT, DOT, MAX, ADD, SIGMUL, EXP, RECIP, SOFTOUT, RSQRT, RECIPN = range(10)
OP_NAMES = ("halt", "dot", "max", "add", "sigmul", "exp", "recip", "softout", "rsqrt", "recipn")
B_RAM, B_ROM, B_IMM = 0, 1, 2  # where operand B comes from
PACK = 8  # RECIP and RECIPN store (1/x << PACK) | leading-one position in one word
CLOCKS_FETCH = 3  # fetch (program ROM, instruction register) and decode of an instruction
# register stages from a step's issue to its result's RAM write: memories, operands, table address unit (scaled
# index, leading one in two stages, mantissa, index, address), table ROM, multiplier operands, tiles, tile sums,
# product, accumulator input, accumulator, wrap, post multiplier (operand, tiles, sums, product), division shift,
# cast input, cast shift | round | overflow, added constant | its overflow, written word (two). An instruction issues
# one step per clock; the clocks around it (fetch, decode, drain) add up to PIPELINE_DEPTH
PIPELINE_DEPTH = 29
MUL_SPLIT = 17  # the multipliers work on 17-bit chunks (18 x 18 signed tiles), each tile product registered

# instruction fields, in program-word order (bit widths are sized to the program by Program.field_bits)
FIELDS = (
    "op",
    "n0",
    "n1",
    "n2",
    "a0",
    "a_s0",
    "a_s1",
    "a_s2",
    "b_src",
    "b0",
    "b_s0",
    "b_s1",
    "b_s2",
    "imm_b",
    "use_c",
    "c0",
    "c_s0",
    "c_s1",
    "c_shl",
    "d0",
    "d_s0",
    "d_s1",
    "p_sh",
    "sa",
    "sb",
    "neg",
    "relu",
    "acc_w",
    "mul_en",
    "post_mul",
    "div_en",
    "div_m",
    "div_k",
    "c_sh",
    "c_rnd",
    "c_ovf",
    "c_w",
    "c_sgn",
    "add_en",
    "imm2",
    "o2_ovf",
    "tb",
    "tb2",
    "ix_sh",
    "ix_half",
    "lo_bits",
    "single",
    "sf",
    "sint",
    "kk",
    "tbits",
    "vw",
    "vf",
    "ish",
    "iw",
)
SIGNED_FIELDS = {"a0", "b0", "imm_b", "p_sh", "post_mul", "c_sh", "imm2", "ix_sh", "kk"}


def _t(t: dict) -> tuple[int, int, bool]:
    """Return (width, frac, signed) of a neutral fixed-point type."""
    return int(t["width"]), int(t["frac"]), bool(t["signed"])


def _bits(t: dict) -> int:
    """Return the two's complement bits that hold every value of a neutral type."""
    return int(t["width"]) + (0 if t["signed"] else 1)


def _cast_fields(t: dict, sh: int) -> dict:
    rnd, sat = t.get("rounding", "TRN"), t.get("saturation", "WRAP")
    if rnd not in ROUNDING or sat not in OVERFLOW:
        raise HwflowError(f"fixed-point modes {rnd}/{sat} of {t['ctype']} are not ap_fixed modes")
    return {
        "c_sh": sh,
        "c_rnd": ROUNDING[rnd],
        "c_ovf": OVERFLOW[sat],
        "c_w": int(t["width"]),
        "c_sgn": int(t["signed"]),
    }


def _int(t: dict, values) -> np.ndarray:
    """Return the integer representations of values already in type t (exact)."""
    v = np.asarray(values, np.float64) * 2.0 ** int(t["frac"])
    r = np.rint(v)
    if not np.array_equal(r, v):
        raise HwflowError(f"constant not representable in {t['ctype']}: re-export the neutral file")
    return r.astype(np.int64)


@dataclass
class Instr:
    layer: str
    f: dict
    bits: int  # widest intermediate of this instruction (two's complement bits)

    def clocks(self) -> int:
        """Return the clocks of the instruction: fetch, one issued step per clock, the drain of the pipeline."""
        return self.f["n0"] * self.f["n1"] * self.f["n2"] + PIPELINE_DEPTH


@dataclass
class Program:
    name: str
    instrs: list = field(default_factory=list)
    ram_size: int = 0
    rom: list = field(default_factory=list)  # weight ROM words (ints)
    tab: list = field(default_factory=list)  # table ROM words (ints)
    tensors: dict = field(default_factory=dict)  # tensor -> (base, n, type)
    ram_bits: int = 2
    done: dict = field(default_factory=dict)  # instruction index -> graph tensors complete after it
    inp: tuple = ()  # (base, n, width, signed)
    out: tuple = ()

    @property
    def xw(self) -> int:
        """Return the datapath width: the widest intermediate of any instruction, plus guard bits."""
        return max(max(i.bits for i in self.instrs) + 2, self.ram_bits + 2, 16)

    def clocks(self) -> int:
        """Return clocks from the first input word to the last output word (the controller's exact schedule)."""
        run = sum(i.clocks() for i in self.instrs if i.f["op"] != HALT)
        return self.inp[1] + run + CLOCKS_FETCH + 2 * self.out[1]  # load, program, halt, two clocks per result

    def field_bits(self) -> dict:
        out = {}
        for name in FIELDS:
            vals = [int(i.f.get(name, 0)) for i in self.instrs]
            if name in SIGNED_FIELDS:
                out[name] = max(max(abs(v) for v in vals).bit_length() + 1, 2)
            else:
                out[name] = max(max(vals).bit_length(), 1)
        return out

    def summary(self) -> dict:
        ops = {}
        for i in self.instrs:
            ops[OP_NAMES[i.f["op"]]] = ops.get(OP_NAMES[i.f["op"]], 0) + 1
        macs = sum(i.f["n0"] * i.f["n1"] * i.f["n2"] for i in self.instrs if i.f["op"] == DOT)
        return {
            "instructions": len(self.instrs),
            "ops": ops,
            "mac_steps": int(macs),
            "ram_words": self.ram_size,
            "ram_bits": self.ram_bits,
            "weight_rom_words": len(self.rom),
            "table_rom_words": len(self.tab),
            "datapath_bits": self.xw,
            "clocks_per_clip": self.clocks(),
        }


class Compiler:
    """Lower the neutral graph layer by layer into a Program (see the module docstring)."""

    def __init__(self, graph: dict, arrays: dict):
        self.g, self.arrays = graph, arrays
        self.p = Program(graph["model"])
        self.rom_index: dict = {}
        self.tab_index: dict = {}
        self.pads = self._pads()
        self.free: list = []  # [base, size] blocks of dead tensors and scratch, reused first-fit
        self.layer_scratch: list = []
        self.root: dict = {}  # reshape alias -> the tensor that owns the words
        self.last_use = self._last_use()

    # --- storage ---------------------------------------------------------------------------------------------
    def _pads(self) -> dict:
        """Return tensor -> (zero frames before, after) that convolutions reading it need."""
        pads: dict = {}
        for e in self.g["layers"]:
            a = e.get("attrs", {})
            if e["op"] in ("conv1d", "depthwise_conv1d", "depthwise1d"):
                k, st = int(a["filt_width"]), int(a.get("stride", 1))
                pl = int(a["pad_left"])
                after = max((int(a["out_width"]) - 1) * st - pl + k - int(a["in_width"]), 0)
                b0, a0 = pads.get(e["inputs"][0], (0, 0))
                pads[e["inputs"][0]] = (max(b0, pl), max(a0, after))
        return pads

    def _last_use(self) -> dict:
        """Return tensor -> index of the last layer reading it (reshape aliases count for the tensor they alias)."""
        root, last = {}, {}
        for i, e in enumerate(self.g["layers"]):
            for t in e["inputs"]:
                last[root.get(t, t)] = i
            if e["op"] == "reshape":
                root[e["output"]] = root.get(e["inputs"][0], e["inputs"][0])
        return last

    def alloc(self, n: int, t: dict, name: str, frame: int = 0) -> int:
        """Return the base of n words for ``name``: a freed block when one fits, fresh words otherwise. Tensors a
        convolution reads with zero frames around them always get fresh words (never written, so still zero)."""
        before, after = self.pads.get(name, (0, 0))
        self.p.ram_bits = max(self.p.ram_bits, _bits(t))
        if before or after:
            base = self.p.ram_size + before * frame
            self.p.ram_size += n + (before + after) * frame
        else:
            blk = next((b for b in sorted(self.free) if b[1] >= n), None)
            if blk is None:
                base = self.p.ram_size
                self.p.ram_size += n
            else:
                base = blk[0]
                blk[0] += n
                blk[1] -= n
                self.free = [b for b in self.free if b[1] > 0]
        self.p.tensors[name] = (base, n, t)
        return base

    def release(self, i: int) -> None:
        """Return the scratch of layer i and the tensors it read last to the free list (padded tensors and outputs
        keep their words)."""
        dead = [t for t, last in self.last_use.items() if last == i and t not in self.g["outputs"]]
        for name in self.layer_scratch + dead:
            if name in self.p.tensors and not any(self.pads.get(name, (0, 0))):
                base, n, _ = self.p.tensors[name]
                self.free.append([base, n])
        self.layer_scratch = []
        blocks = sorted(self.free)
        merged: list = []
        for b in blocks:  # coalesce neighbours
            if merged and merged[-1][0] + merged[-1][1] == b[0]:
                merged[-1][1] += b[1]
            else:
                merged.append(list(b))
        self.free = merged

    def tensor(self, name: str) -> tuple[int, int, dict]:
        return self.p.tensors[name]

    def new_tensor(self, name: str) -> int:
        info = self.g["tensors"][name]
        shape = info["shape"]
        return self.alloc(int(np.prod(shape)), info["type"], name, int(shape[-1]) if len(shape) > 1 else 0)

    def scratch(self, name: str, n: int, t: dict, extra_bits: int = 0) -> int:
        base = self.alloc(n, t, name)
        self.layer_scratch.append(name)
        self.p.ram_bits = max(self.p.ram_bits, _bits(t) + extra_bits)
        return base

    def rom(self, key: str, t: dict, values) -> tuple[int, int]:
        """Return (base, bits) of constants in the weight ROM (deduplicated by array name)."""
        if key not in self.rom_index:
            ints = _int(t, np.asarray(values).ravel())
            self.rom_index[key] = (len(self.p.rom), _bits(t))
            self.p.rom.extend(int(v) for v in ints)
        return self.rom_index[key]

    def table(self, t: dict, values) -> int:
        """Return the base of a table in the table ROM (identical tables stored once)."""
        ints = tuple(int(v) for v in _int(t, np.asarray(values).ravel()))
        if ints not in self.tab_index:
            self.tab_index[ints] = len(self.p.tab)
            self.p.tab.extend(ints)
        return self.tab_index[ints]

    def emit(self, layer: str, bits: int, **f) -> None:
        base = dict.fromkeys(FIELDS, 0)
        base.update(n0=1, n1=1, n2=1, c_w=1)
        base.update(f)
        for k in ("n0", "n1", "n2"):
            if base[k] < 1:
                raise HwflowError(f"layer '{layer}': empty loop ({k} = {base[k]})")
        self.p.instrs.append(Instr(layer, base, int(bits)))

    # --- building blocks -------------------------------------------------------------------------------------
    def sum_of(self, layer, *, n, a, x_t, out_t, acc_t, d, post=None):
        """Emit d = (out_t) post(sum over i2 of x): a dot product with an immediate 1 (the pooling sum, the norm
        mean, the softmax sum), x of type x_t."""
        self.dot(
            layer, n=n, a=a, b=None, imm_b=1, out_t=out_t, acc_t=acc_t, fa=int(x_t["frac"]), fb=0, ba=_bits(x_t),
            bb=2, d=d, post=post,
        )  # fmt: skip

    def dot(self, layer, *, n, a, b, out_t, acc_t, fa, fb, ba, bb, d, bias=None, imm_b=None, post=None, add=None):
        """Emit acc = bias + sum_i2 A*B (products floored to accum_t's grid, sum wrapped to accum_t), then the
        optional post multiply/division, the cast to out_t (and an added constant with a second overflow).

        n = (n0, n1, n2); a, b, d: dicts of base/strides; bias: (base, s0, s1, frac, bits) in the weight ROM."""
        wa, fac, sa = _t(acc_t) if acc_t is not None else (0, fa + fb, True)
        if acc_t is not None and (acc_t.get("rounding", "TRN") != "TRN"):
            raise HwflowError(f"layer '{layer}': accumulator {acc_t['ctype']} rounds; the engine accumulates AP_TRN")
        if acc_t is not None and acc_t.get("saturation", "WRAP") != "WRAP":
            raise HwflowError(f"layer '{layer}': accumulator {acc_t['ctype']} saturates; the engine wraps (AP_WRAP)")
        p_sh = fa + fb - fac
        f = {"op": DOT, "n0": n[0], "n1": n[1], "n2": n[2], "p_sh": p_sh, "acc_w": wa}
        f.update({"a0": a["base"], "a_s0": a.get("s0", 0), "a_s1": a.get("s1", 0), "a_s2": a.get("s2", 0)})
        if imm_b is not None:
            f.update(b_src=B_IMM, imm_b=imm_b)
        else:
            f.update(b_src=b["src"], b0=b["base"], b_s0=b.get("s0", 0), b_s1=b.get("s1", 0), b_s2=b.get("s2", 0))
        bits = ba + bb - 1 + max(-p_sh, 0) + math.ceil(math.log2(n[2]))  # two's complement bits of the sum
        if bias is not None:
            base, s0, s1, bf, bbits = bias
            if bf > fac:
                raise HwflowError(f"layer '{layer}': bias has more fractional bits ({bf}) than the accumulator ({fac})")
            f.update(use_c=1, c0=base, c_s0=s0, c_s1=s1, c_shl=fac - bf)
            bits = max(bits, bbits + fac - bf) + 1
        if bits > 63:
            raise HwflowError(f"layer '{layer}': the running sum needs {bits} bits (> 63): narrow its inputs")
        frac = fac
        if wa:
            bits = wa + 1
        if post is not None and post[0] == "mul":
            _, m, mfrac = post
            f.update(mul_en=1, post_mul=m)
            bits += abs(m).bit_length() + 1
            frac += mfrac
        elif post is not None and post[0] == "div":
            m, k = _magic(post[1], wa)
            f.update(div_en=1, div_m=m, div_k=k)
            bits = max(bits, wa + m.bit_length() + 1)
        f.update(_cast_fields(out_t, frac - int(out_t["frac"])))
        bits += max(int(out_t["frac"]) - frac, 0)
        if add is not None:
            f.update(add_en=1, imm2=add, o2_ovf=OVERFLOW[out_t.get("saturation", "WRAP")])
        f.update(d0=d["base"], d_s0=d.get("s0", 0), d_s1=d.get("s1", 0))
        self.emit(layer, bits, **f)

    def add(self, layer, *, n, a, b, fa, fb, out_t, d, neg=False, relu=False, imm_b=None, ba=0, bb=0):
        """Emit out = cast((A << sa) +/- (B << sb)) (optionally relu'd) elementwise."""
        F = max(fa, fb)
        f = {"op": ADD, "n0": n[0], "n1": n[1], "sa": F - fa, "sb": F - fb, "neg": int(neg), "relu": int(relu)}
        f.update({"a0": a["base"], "a_s0": a.get("s0", 0), "a_s1": a.get("s1", 0)})
        if imm_b is not None:
            f.update(b_src=B_IMM, imm_b=imm_b)
        else:
            f.update(b_src=B_RAM, b0=b["base"], b_s0=b.get("s0", 0), b_s1=b.get("s1", 0))
        f.update(_cast_fields(out_t, F - int(out_t["frac"])))
        f.update(d0=d["base"], d_s0=d.get("s0", 0), d_s1=d.get("s1", 0))
        bits = max(ba + F - fa, bb + F - fb) + 2 + max(int(out_t["frac"]) - F, 0)
        self.emit(layer, bits, **f)

    # --- layers ----------------------------------------------------------------------------------------------
    def compile(self) -> Program:
        g = self.g
        if len(g["inputs"]) != 1 or len(g["outputs"]) != 1:
            raise HwflowError("serial engine: one input and one output tensor only (use the parallel RTL design)")
        for i, e in enumerate(g["layers"]):
            fn = getattr(self, "l_" + e["op"], None)
            if fn is None:
                raise HwflowError(
                    f"serial engine: layer '{e['name']}' ({e['hls_class']}, op {e['op']}) has no lowering: "
                    "use rtl.macs_per_cycle: 0 (parallel/folded designs) or add its lowering to hwflow/rtl/serial.py"
                )
            if e["op"] not in ("input", "reshape"):
                self.new_tensor(e["output"])
            fn(e)
            if self.p.instrs:
                self.p.done[len(self.p.instrs) - 1] = self.p.done.get(len(self.p.instrs) - 1, []) + [e["output"]]
            self.release(i)
        self.emit("halt", 1, op=HALT)
        _check_hazards(self.p)
        ib, n_in, it = self.tensor(g["inputs"][0])
        ob, n_out, ot = self.tensor(g["outputs"][0])
        self.p.inp = (ib, n_in, int(it["width"]), bool(it["signed"]))
        self.p.out = (ob, n_out, int(ot["width"]), bool(ot["signed"]))
        return self.p

    def _io(self, e):
        x = self.g["tensors"][e["inputs"][0]]
        return self.tensor(e["inputs"][0]), x, self.tensor(e["output"])

    def l_input(self, e):
        self.new_tensor(e["output"])

    def l_reshape(self, e):
        base, n, _ = self.tensor(e["inputs"][0])
        self.p.tensors[e["output"]] = (base, n, self.g["tensors"][e["output"]]["type"])

    def l_activation(self, e):
        (xb, n, xt), _, (yb, _, yt) = self._io(e)
        act = e["attrs"].get("activation", "linear")
        if act not in ("relu", "linear"):
            raise HwflowError(f"serial engine: activation '{act}' of layer '{e['name']}' (relu and linear only)")
        self.add(
            e["name"],
            n=(n, 1),
            a={"base": xb, "s0": 1},
            b=None,
            fa=int(xt["frac"]),
            fb=int(xt["frac"]),
            out_t=yt,
            d={"base": yb, "s0": 1},
            relu=act == "relu",
            imm_b=0,
            ba=_bits(xt),
        )

    def l_merge(self, e):
        op = e["attrs"]["op"]
        if op not in ("add", "subtract", "multiply"):
            raise HwflowError(f"serial engine: merge '{op}' of layer '{e['name']}' (add, subtract, multiply only)")
        (ab, n, at), (bb, _, bt) = (self.tensor(t) for t in e["inputs"])
        yb, _, yt = self.tensor(e["output"])
        fa, fb = int(at["frac"]), int(bt["frac"])
        if op == "multiply":
            self.dot(
                e["name"],
                n=(n, 1, 1),
                a={"base": ab, "s0": 1},
                b={"src": B_RAM, "base": bb, "s0": 1},
                out_t=yt,
                acc_t=None,
                fa=fa,
                fb=fb,
                ba=_bits(at),
                bb=_bits(bt),
                d={"base": yb, "s0": 1},
            )
            return
        self.add(
            e["name"],
            n=(n, 1),
            a={"base": ab, "s0": 1},
            b={"base": bb, "s0": 1},
            fa=fa,
            fb=fb,
            out_t=yt,
            d={"base": yb, "s0": 1},
            neg=op == "subtract",
            ba=_bits(at),
            bb=_bits(bt),
        )

    def _weights(self, e, wkey="weight", bkey="bias", wt=None, bt=None):
        ty = e["types"]
        wt, bt = wt or ty["weight"], bt or ty["bias"]
        w = self.arrays[e["arrays"][wkey]]
        b = self.arrays[e["arrays"][bkey]] if bkey in e["arrays"] else np.zeros(w.shape[-1])
        wb, wbits = self.rom(e["arrays"][wkey], wt, w)
        bb, bbits = self.rom(e["arrays"].get(bkey, e["name"] + "." + bkey), bt, b)
        return w.shape, (wb, wbits, int(wt["frac"])), (bb, bbits, int(bt["frac"]))

    def _dense(self, name, x, xt, rows, n_in, n_out, w, bias, acc_t, out_t, y, wkey=None):
        wb, wbits, wf = w
        bb, bbits, bf = bias
        self.dot(
            name,
            n=(rows, n_out, n_in),
            a={"base": x, "s0": n_in, "s2": 1},
            b={"src": B_ROM, "base": wb, "s1": 1, "s2": n_out},
            out_t=out_t,
            acc_t=acc_t,
            fa=int(xt["frac"]),
            fb=wf,
            ba=_bits(xt),
            bb=wbits,
            bias=(bb, 0, 1, bf, bbits),
            d={"base": y, "s0": n_out, "s1": 1},
        )

    def l_dense(self, e):
        (xb, n, xt), x, (yb, _, yt) = self._io(e)
        shape, w, b = self._weights(e)
        n_in, n_out = int(shape[0]), int(shape[1])
        self._dense(e["name"], xb, xt, n // n_in, n_in, n_out, w, b, e["types"]["accum"], yt, yb)

    def l_conv1d(self, e):
        (xb, _, xt), _, (yb, _, yt) = self._io(e)
        a = e["attrs"]
        c, f, k, st, pl = (int(a[key]) for key in ("n_chan", "n_filt", "filt_width", "stride", "pad_left"))
        _, (wb, wbits, wf), (bb, bbits, bf) = self._weights(e)
        # output frame t reads the K*C contiguous words of its zero-padded window (tap-major, like im2col)
        self.dot(
            e["name"],
            n=(int(a["out_width"]), f, k * c),
            a={"base": xb - pl * c, "s0": st * c, "s2": 1},
            b={"src": B_ROM, "base": wb, "s1": 1, "s2": f},
            out_t=yt,
            acc_t=e["types"]["accum"],
            fa=int(xt["frac"]),
            fb=wf,
            ba=_bits(xt),
            bb=wbits,
            bias=(bb, 0, 1, bf, bbits),
            d={"base": yb, "s0": f, "s1": 1},
        )

    def l_depthwise_conv1d(self, e):
        (xb, _, xt), _, (yb, _, yt) = self._io(e)
        a = e["attrs"]
        c, k, pl = int(a["n_chan"]), int(a["filt_width"]), int(a["pad_left"])
        _, (wb, wbits, wf), (bb, bbits, bf) = self._weights(e)
        self.dot(
            e["name"],
            n=(int(a["out_width"]), c, k),
            a={"base": xb - pl * c, "s0": c, "s1": 1, "s2": c},
            b={"src": B_ROM, "base": wb, "s1": 1, "s2": c},
            out_t=yt,
            acc_t=e["types"]["accum"],
            fa=int(xt["frac"]),
            fb=wf,
            ba=_bits(xt),
            bb=wbits,
            bias=(bb, 0, 1, bf, bbits),
            d={"base": yb, "s0": c, "s1": 1},
        )

    l_depthwise1d = l_depthwise_conv1d  # older neutral files

    def _sigmoid(self, e, glu: bool):
        (xb, n, xt), x, (yb, _, yt) = self._io(e)
        a, ty = e["attrs"], e["types"]
        tb = self.table(ty["table"], self.arrays[e["arrays"]["table"]])
        c = int(x["shape"][-1])
        half = int(a["table_size"]) // 2
        out_c = c // 2 if glu else c
        rows = n // c
        f = {
            "op": SIGMUL,
            "n0": rows,
            "n1": out_c,
            "a0": xb,
            "a_s0": c,
            "a_s1": 1,
            "b_src": B_RAM,
            "b0": xb + (c // 2 if glu else 0),
            "b_s0": c,
            "b_s1": 1,
            "tb": tb,
            "ix_sh": int(xt["frac"]) - int(a["log2_scale"]),
            "ix_half": half,
            "d0": yb,
            "d_s0": out_c,
            "d_s1": 1,
        }
        tf = int(ty["table"]["frac"])
        f.update(_cast_fields(yt, int(xt["frac"]) + tf - int(yt["frac"])))
        self.emit(e["name"], _bits(xt) + _bits(ty["table"]) + max(int(yt["frac"]) - int(xt["frac"]) - tf, 0) + 10, **f)

    def l_swish(self, e):
        self._sigmoid(e, glu=False)

    def l_glu(self, e):
        self._sigmoid(e, glu=True)

    def l_global_pool1d(self, e):
        (xb, _, xt), _, (yb, _, yt) = self._io(e)
        a, ty = e["attrs"], e["types"]
        n_in, c = int(a["n_in"]), int(a["n_filt"])
        acc_t = ty.get("accum", yt)
        if a["pool"] != "Average":
            raise HwflowError(f"serial engine: '{a['pool']}' pooling of layer '{e['name']}' (Average only)")
        if int(xt["frac"]) > int(acc_t["frac"]):
            raise HwflowError(f"layer '{e['name']}': pooling accumulator has fewer fractional bits than its input")
        # sum in accum_t (wraps), '/= n_in' truncating toward zero (exact magic-number division), cast to result
        self.sum_of(
            e["name"], n=(1, c, n_in), a={"base": xb, "s1": 1, "s2": c}, x_t=xt, out_t=yt, acc_t=acc_t,
            d={"base": yb, "s1": 1}, post=("div", n_in),
        )  # fmt: skip

    def l_layernorm(self, e):
        self._norm(e)

    l_rmsnorm = l_layernorm

    def _norm(self, e):
        (xb, n, xt), x, (yb, _, yt) = self._io(e)
        a, ty, nm = e["attrs"], e["types"], e["name"]
        c = int(a["n_in"])
        rows = n // c
        center = bool(a.get("center", e["op"] == "layernorm"))
        acc_t, mean_t, diff_t, var_t = ty["accum"], ty.get("mean"), ty["diff"], ty["var"]
        it, tt, norm_t, inv_n_t = ty["inv_std"], ty["table"], ty["norm"], ty["inv_n"]
        inv_n = int(_int(inv_n_t, [a["inv_n"]])[0])
        fx = int(xt["frac"])
        d = self.scratch(nm + ":diff", n, diff_t)
        if center:
            mean = self.scratch(nm + ":mean", rows, mean_t)
            self.sum_of(
                nm, n=(rows, 1, c), a={"base": xb, "s0": c, "s2": 1}, x_t=xt, out_t=mean_t, acc_t=acc_t,
                d={"base": mean, "s0": 1}, post=("mul", inv_n, int(inv_n_t["frac"])),
            )  # fmt: skip
            self.add(
                nm,
                n=(rows, c),
                a={"base": xb, "s0": c, "s1": 1},
                b={"base": mean, "s0": 1},
                fa=fx,
                fb=int(mean_t["frac"]),
                out_t=diff_t,
                d={"base": d, "s0": c, "s1": 1},
                neg=True,
                ba=_bits(xt),
                bb=_bits(mean_t),
            )
        else:
            self.add(
                nm,
                n=(rows, c),
                a={"base": xb, "s0": c, "s1": 1},
                b=None,
                imm_b=0,
                fa=fx,
                fb=fx,
                out_t=diff_t,
                d={"base": d, "s0": c, "s1": 1},
                ba=_bits(xt),
            )
        var = self.scratch(nm + ":var", rows, var_t)
        fd = int(diff_t["frac"])
        eps = int(_int(var_t, [a["eps_q"]])[0])
        self.dot(
            nm,
            n=(rows, 1, c),
            a={"base": d, "s0": c, "s2": 1},
            b={"src": B_RAM, "base": d, "s0": c, "s2": 1},
            out_t=var_t,
            acc_t=acc_t,
            fa=fd,
            fb=fd,
            ba=_bits(diff_t),
            bb=_bits(diff_t),
            d={"base": var, "s0": 1},
            post=("mul", inv_n, int(inv_n_t["frac"])),
            add=eps,
        )
        # 1/sqrt(var): leading one, table pair of the octave, interpolation, shift by half the exponent
        if int(it["frac"]) < int(tt["frac"]) or it["signed"] or var_t["signed"]:
            raise HwflowError(f"layer '{nm}': inv_std type {it['ctype']} must be unsigned with >= table frac bits")
        tb = self.table(tt, self.arrays[e["arrays"]["table"]])
        istd = self.scratch(nm + ":inv_std", rows, it)
        f = {
            "op": RSQRT,
            "n0": rows,
            "a0": var,
            "a_s0": 1,
            "tb": tb,
            "tbits": int(a["table_bits"]),
            "vw": int(var_t["width"]),
            "vf": int(var_t["frac"]),
            "ish": int(it["frac"]) - int(tt["frac"]),
            "iw": int(it["width"]),
            "d0": istd,
            "d_s0": 1,
        }
        f.update(_cast_fields(tt, 0))
        vw, tbits = int(var_t["width"]), int(a["table_bits"])
        self.emit(
            nm,
            max(_bits(tt) + vw - tbits + 2, _bits(tt) + f["ish"] + (f["vf"] + 1) // 2 + 2, int(it["width"]) + 2),
            **f,
        )
        nrm = self.scratch(nm + ":norm", n, norm_t)
        self.dot(
            nm,
            n=(rows, c, 1),
            a={"base": d, "s0": c, "s1": 1},
            b={"src": B_RAM, "base": istd, "s0": 1},
            out_t=norm_t,
            acc_t=None,
            fa=fd,
            fb=int(it["frac"]),
            ba=_bits(diff_t),
            bb=_bits(it),
            d={"base": nrm, "s0": c, "s1": 1},
        )
        st, bt = ty["scale"], ty["bias"]
        gb, gbits = self.rom(e["arrays"]["scale"], st, self.arrays[e["arrays"]["scale"]])
        bb, bbits = self.rom(e["arrays"]["bias"], bt, self.arrays[e["arrays"]["bias"]])
        F = max(int(norm_t["frac"]) + int(st["frac"]), int(bt["frac"]))
        acc = {"width": 0, "frac": F, "signed": True, "ctype": "exact"}
        self.dot(
            nm,
            n=(rows, c, 1),
            a={"base": nrm, "s0": c, "s1": 1},
            b={"src": B_ROM, "base": gb, "s1": 1},
            out_t=yt,
            acc_t=acc,
            fa=int(norm_t["frac"]),
            fb=int(st["frac"]),
            ba=_bits(norm_t),
            bb=gbits,
            bias=(bb, 0, 1, int(bt["frac"]), bbits),
            d={"base": yb, "s0": c, "s1": 1},
        )

    def _softmax(self, nm, ty, pre, x, xt, rows, n, out, out_t, tables, lo_bits, inv_bits):
        """Emit the hwflow softmax of ``rows`` rows of ``n`` values at x (type xt) into out (out_t)."""
        norm_t, exp_t, inv_t, sum_t = (
            ty[pre + "inp_norm"],
            ty[pre + "exp_table"],
            ty[pre + "inv_table"],
            ty[pre + "sum"],
        )
        fx = int(xt["frac"])
        mx = self.scratch(nm + ":max", rows, xt)
        self.emit(nm, _bits(xt) + 1, op=MAX, n0=rows, n2=n, a0=x, a_s0=n, a_s2=1, d0=mx, d_s0=1, **_cast_fields(xt, 0))
        dn = self.scratch(nm + ":d", rows * n, norm_t)
        self.add(
            nm,
            n=(rows, n),
            a={"base": mx, "s0": 1},
            b={"base": x, "s0": n, "s1": 1},
            fa=fx,
            fb=fx,
            out_t=norm_t,
            d={"base": dn, "s0": n, "s1": 1},
            neg=True,
            ba=_bits(xt),
            bb=_bits(xt),
        )
        hi = self.table(exp_t, tables["exp_hi"])
        lo = self.table(exp_t, tables["exp_lo"])
        ex = self.scratch(nm + ":exp", rows * n, exp_t)
        fe = int(exp_t["frac"])
        self.emit(
            nm,
            2 * _bits(exp_t) + 1,
            op=EXP,
            n0=rows * n,
            a0=dn,
            a_s0=1,
            tb=hi,
            tb2=lo,
            lo_bits=lo_bits,
            single=int(lo_bits == 0),
            d0=ex,
            d_s0=1,
            **_cast_fields(exp_t, fe if lo_bits else 0),
        )
        sm = self.scratch(nm + ":sum", rows, sum_t)
        self.sum_of(
            nm, n=(rows, 1, n), a={"base": ex, "s0": n, "s2": 1}, x_t=exp_t, out_t=sum_t, acc_t=None,
            d={"base": sm, "s0": 1},
        )  # fmt: skip
        sf, si = int(sum_t["frac"]), int(sum_t["integer"])
        kk = sf - inv_bits
        rp = self.scratch(nm + ":recip", rows, inv_t, extra_bits=PACK)
        self.emit(
            nm,
            _bits(inv_t) + _bits(sum_t) + 4,
            op=RECIP,
            n0=rows,
            a0=sm,
            a_s0=1,
            tb=self.table(inv_t, tables["inv"]),
            sf=sf,
            sint=si,
            kk=kk,
            d0=rp,
            d_s0=1,
            **_cast_fields(inv_t, max(kk, 0)),
        )
        fo = fe + int(inv_t["frac"])
        self.emit(
            nm,
            _bits(exp_t) + _bits(inv_t) + 1,
            op=SOFTOUT,
            n0=rows,
            n1=n,
            a0=ex,
            a_s0=n,
            a_s1=1,
            b_src=B_RAM,
            b0=rp,
            b_s0=1,
            d0=out,
            d_s0=n,
            d_s1=1,
            **_cast_fields(out_t, fo - int(out_t["frac"])),
        )

    def _tables(self, e, pre):
        return {k: self.arrays[e["arrays"][f"{pre}tables.{k}"]] for k in ("exp_hi", "exp_lo", "inv")}

    def l_softmax(self, e):
        (xb, n, xt), x, (yb, _, yt) = self._io(e)
        a = e["attrs"]
        c = int(a["n_in"])
        self._softmax(
            e["name"],
            e["types"],
            "",
            xb,
            xt,
            n // c,
            c,
            yb,
            yt,
            self._tables(e, ""),
            int(a["lo_bits"]),
            int(a["inv_bits"]),
        )

    def _qkv(self, e, T):
        """Emit the token-wise Q, K, V projections of attention layer e (T tokens); return their RAM bases."""
        a, ty, nm = e["attrs"], e["types"], e["name"]
        H, kd, vd = int(a["num_heads"]), int(a["key_dim"]), int(a["value_dim"])
        (xb, _, xt), _, _ = self._io(e)
        proj = {}
        for key, width in (("query", H * kd), ("key", H * kd), ("value", H * vd)):
            dst = self.scratch(f"{nm}:{key}", T * width, ty["q"])
            _, w, b = self._weights(e, f"{key}_weight", f"{key}_bias", ty[f"{key}_weight"], ty[f"{key}_bias"])
            self._dense(nm, xb, xt, T, int(a["embed_dim"]), width, w, b, ty["proj_accum"], ty["q"], dst)
            proj[key] = dst
        return proj

    def _attend(self, e, T, q, k, v, kv_t, n_kv):
        """Emit softmax attention of T queries (RAM base q) over n_kv keys/values (bases k, v, of type kv_t; rows of
        H * dim words) and the output projection into e's output: hwflow.reference.attention.mha's arithmetic after
        the projections. Grouped attention (attrs group g) joins g neighbouring tokens into one row of g * dim
        features (queries and keys/values alike)."""
        _, _, (yb, _, yt) = self._io(e)
        a, ty, nm = e["attrs"], e["types"], e["name"]
        H, kd, vd, od = int(a["num_heads"]), int(a["key_dim"]), int(a["value_dim"]), int(a["out_dim"])
        g = int(a.get("group", 1) or 1)
        qt, acc_t, st, at, ct = ty["q"], ty["accum"], ty["score"], ty["attn"], ty["context"]
        rs = int(_int(ty["scale"], [a["scale"]])[0])
        hk, hv = H * kd, H * vd
        R, C = T // g, n_kv // g  # query rows, key/value rows
        sc = self.scratch(nm + ":score", H * R * C, st)
        att = self.scratch(nm + ":attn", H * R * C, at)
        ctx = self.scratch(nm + ":context", T * hv, ct)
        # A grouped row of head h is g tokens' slices of that head: contiguous only when the head's columns are the
        # token's only ones, so with several heads each head's Q/K/V is first copied out (head-major, exact) and the
        # context copied back; one head (or g = 1) reads the projections in place.
        split = g > 1 and H > 1
        if split:
            head = {
                "query": (self.scratch(nm + ":query_head", T * kd, qt), q, qt, T, kd),
                "key": (self.scratch(nm + ":key_head", n_kv * kd, kv_t), k, kv_t, n_kv, kd),
                "value": (self.scratch(nm + ":value_head", n_kv * vd, kv_t), v, kv_t, n_kv, vd),
            }
            ctx_head = self.scratch(nm + ":context_head", T * vd, ct)
        fq, fk = int(qt["frac"]), int(kv_t["frac"])
        tables = self._tables(e, "softmax.")
        for h in range(H):
            if split:
                for dst, src, t, rows, d in head.values():
                    self._head_copy(nm, src, t, rows, H * d, h * d, d, dst, d)
                qb, kb, vb, rk, rv = head["query"][0], head["key"][0], head["value"][0], kd, vd
            else:
                qb, kb, vb, rk, rv = q + h * kd, k + h * kd, v + h * vd, hk, hv
            # a row (grouped: g tokens) starts every g * rk words; within it the g * kd features are contiguous
            # (rk = kd) or, ungrouped, the kd features of one token
            self.dot(
                nm,
                n=(R, C, g * kd),
                a={"base": qb, "s0": g * rk, "s2": 1},
                b={"src": B_RAM, "base": kb, "s1": g * rk, "s2": 1},
                out_t=st,
                acc_t=acc_t,
                fa=fq,
                fb=fk,
                ba=_bits(qt),
                bb=_bits(kv_t),
                d={"base": sc + h * R * C, "s0": C, "s1": 1},
                post=("mul", rs, int(ty["scale"]["frac"])),
            )
            self._softmax(
                nm,
                ty,
                "softmax.",
                sc + h * R * C,
                st,
                R,
                C,
                att + h * R * C,
                at,
                tables,
                int(a["softmax.lo_bits"]),
                int(a["softmax.inv_bits"]),
            )
            # context row r, column u * vd + v (token r * g + u, feature v): sum over rows j of attn[r][j] * V[j][.]
            self.dot(
                nm,
                n=(R, g * vd, C),
                a={"base": att + h * R * C, "s0": C, "s2": 1},
                b={"src": B_RAM, "base": vb, "s1": 1, "s2": g * rv},
                out_t=ct,
                acc_t=acc_t,
                fa=int(at["frac"]),
                fb=fk,
                ba=_bits(at),
                bb=_bits(kv_t),
                d={"base": ctx_head if split else ctx + h * vd, "s0": g * (vd if split else hv), "s1": 1},
            )
            if split:
                self._head_copy(nm, ctx_head, ct, T, vd, 0, vd, ctx + h * vd, hv)
        _, w, b = self._weights(e, "output_weight", "output_bias", ty["output_weight"], ty["output_bias"])
        self._dense(nm, ctx, ct, T, hv, od, w, b, ty["out_accum"], yt, yb)

    def _head_copy(self, nm, src, t, rows, width, col, n, out, stride_out):
        """Copy columns col .. col + n of a rows x width tensor into rows of stride_out words at out (exact)."""
        f = int(t["frac"])
        self.add(
            nm,
            n=(rows, n),
            a={"base": src + col, "s0": width, "s1": 1},
            b=None,
            imm_b=0,
            fa=f,
            fb=f,
            ba=_bits(t),
            out_t=t,
            d={"base": out, "s0": stride_out, "s1": 1},
        )

    def l_mha(self, e):
        if len(e["inputs"]) != 1:
            raise HwflowError(f"serial engine: attention '{e['name']}' must be self-attention (one input)")
        T = int(e["attrs"]["seq_len"])
        proj = self._qkv(e, T)
        self._attend(e, T, proj["query"], proj["key"], proj["value"], e["types"]["q"], T)

    def l_linformer(self, e):
        """Linformer (hwflow.reference.linformer): keys and values compressed along the sequence, N -> k, by the
        constant k x N matrices E, F (a dot product per compressed token and column, cast to kv), then attention of
        the N queries over the k compressed tokens (the inner spec 'attn.')."""
        inner = sub_layer(e, "attn.")
        ty, nm, a = e["types"], e["name"], inner["attrs"]
        T, kk = int(e["attrs"]["seq_len"]), int(e["attrs"]["proj_k"])
        proj = self._qkv(inner, T)
        kv_t, qt = ty["kv"], inner["types"]["q"]
        widths = {"key": int(a["num_heads"]) * int(a["key_dim"]), "value": int(a["num_heads"]) * int(a["value_dim"])}
        compressed = {}
        for key, width in widths.items():
            name, wt = e["arrays"][f"{key}_seq_weight"], ty[f"{key}_seq_weight"]
            wb, wbits = self.rom(name, wt, self.arrays[name])  # E (keys) or F (values), k x N
            compressed[key] = self.scratch(f"{nm}:{key}_seq", kk * width, kv_t)
            self.dot(
                nm,
                n=(kk, width, T),
                a={"base": proj[key], "s1": 1, "s2": width},
                b={"src": B_ROM, "base": wb, "s0": T, "s2": 1},
                out_t=kv_t,
                acc_t=ty["seq_accum"],
                fa=int(qt["frac"]),
                fb=int(wt["frac"]),
                ba=_bits(qt),
                bb=wbits,
                d={"base": compressed[key], "s0": width, "s1": 1},
            )
        self._attend(inner, T, proj["query"], compressed["key"], compressed["value"], kv_t, kk)

    def l_cosformer(self, e):
        """cosFormer (hwflow.reference.cosformer): ReLU features re-weighted by the per-position cos/sin ROM, the
        per-head state K'^T V and sum K' over all positions, then per query num = Q' KV and den = Q' . Ksum (cos
        and sin halves side by side, one dot product each), den's reciprocal normalised at its leading one and the
        exact product num * 1/m shifted by the leading one, rounded once. Arithmetic modulo the accumulator's width
        is order-free, so the reference's interleaved c/s accumulation equals one sum over both halves."""
        (xb, _, xt), _, (yb, _, yt) = self._io(e)
        a, ty, nm = e["attrs"], e["types"], e["name"]
        H, kd, vd, od = int(a["num_heads"]), int(a["key_dim"]), int(a["value_dim"]), int(a["out_dim"])
        T = int(a["seq_len"])
        qt, ft, acc_t, trig_t = ty["q"], ty["feat"], ty["accum"], ty["trig"]
        kv_t, ks_t, num_t, den_t, inv_t, ct = ty["kv"], ty["ksum"], ty["num"], ty["den"], ty["inv_table"], ty["context"]
        hk, hv, w2 = H * kd, H * vd, 2 * kd  # a feature row of one head: kd cos-weighted then kd sin-weighted
        proj = self._qkv(e, T)
        # features[t, h, (cos | sin), d] = (feat_t)(relu(x[t, h*kd + d]) * trig[t]); ReLU first (feat_t may wrap)
        trig = {
            n: self.rom(e["arrays"][f"tables.{n}"], trig_t, self.arrays[e["arrays"][f"tables.{n}"]])
            for n in ("cos", "sin")
        }
        feats = {}
        for key in ("query", "key"):
            r = self.scratch(f"{nm}:{key}_relu", T * hk, qt)
            self.add(
                nm, n=(T, hk), a={"base": proj[key], "s0": hk, "s1": 1}, b=None, imm_b=0, fa=int(qt["frac"]),
                fb=int(qt["frac"]), ba=_bits(qt), out_t=qt, relu=True, d={"base": r, "s0": hk, "s1": 1},
            )  # fmt: skip
            feats[key] = self.scratch(f"{nm}:{key}_feat", T * H * w2, ft)
            for h in range(H):
                for half, (tb, tbits) in enumerate(trig.values()):
                    self.dot(
                        nm, n=(T, kd, 1), a={"base": r + h * kd, "s0": hk, "s1": 1},
                        b={"src": B_ROM, "base": tb, "s0": 1}, out_t=ft, acc_t=None, fa=int(qt["frac"]),
                        fb=int(trig_t["frac"]), ba=_bits(qt), bb=tbits,
                        d={"base": feats[key] + h * w2 + half * kd, "s0": H * w2, "s1": 1},
                    )  # fmt: skip
        kv = self.scratch(nm + ":kv", H * w2 * vd, kv_t)
        ks = self.scratch(nm + ":ksum", H * w2, ks_t)
        num = self.scratch(nm + ":num", T * hv, num_t)
        den = self.scratch(nm + ":den", T * H, den_t)
        fq, fv = int(ft["frac"]), int(qt["frac"])
        for h in range(H):
            kf = {"base": feats["key"] + h * w2, "s0": 1, "s2": H * w2}  # feature c of position j
            self.dot(
                nm, n=(w2, vd, T), a=kf, b={"src": B_RAM, "base": proj["value"] + h * vd, "s1": 1, "s2": hv},
                out_t=kv_t, acc_t=acc_t, fa=fq, fb=fv, ba=_bits(ft), bb=_bits(qt),
                d={"base": kv + h * w2 * vd, "s0": vd, "s1": 1},
            )  # fmt: skip
            self.sum_of(nm, n=(w2, 1, T), a=kf, x_t=ft, out_t=ks_t, acc_t=acc_t, d={"base": ks + h * w2, "s0": 1})
            qf = {"base": feats["query"] + h * w2, "s0": H * w2, "s2": 1}  # query i's 2 kd features
            self.dot(
                nm, n=(T, vd, w2), a=qf, b={"src": B_RAM, "base": kv + h * w2 * vd, "s1": 1, "s2": vd},
                out_t=num_t, acc_t=acc_t, fa=fq, fb=int(kv_t["frac"]), ba=_bits(ft), bb=_bits(kv_t),
                d={"base": num + h * vd, "s0": hv, "s1": 1},
            )  # fmt: skip
            self.dot(
                nm, n=(T, 1, w2), a=qf, b={"src": B_RAM, "base": ks + h * w2, "s2": 1}, out_t=den_t, acc_t=acc_t,
                fa=fq, fb=int(ks_t["frac"]), ba=_bits(ft), bb=_bits(ks_t), d={"base": den + h, "s0": H},
            )  # fmt: skip
        ctx = self._normalise(nm, num, num_t, den, den_t, T * H, vd, inv_t, int(a["inv_bits"]), e, ct)
        _, w, b = self._weights(e, "output_weight", "output_bias", ty["output_weight"], ty["output_bias"])
        self._dense(nm, ctx, ct, T, hv, od, w, b, ty["out_accum"], yt, yb)

    def _normalise(self, nm, num, num_t, den, den_t, rows, n, inv_t, inv_bits, e, ct) -> int:
        """Emit ctx[r, :] = (ct)(num[r, :] / den[r]) as hwflow_cosformer.h and return ctx's RAM base: den = m 2^p
        (RECIPN: 1/m from the interpolated table, packed with p), a zero guard (den = 0 -> 0: the packed word times
        a 0/1 table entry indexed by den clamped to [-2, 1]), then num * (1/m) << (W - 1) >> p, one rounding."""
        W, F = int(den_t["width"]), int(den_t["frac"])
        tb = self.table(inv_t, self.arrays[e["arrays"]["tables.inv"]])
        pw = _bits(inv_t) + PACK
        packed_t = {"width": pw, "frac": 0, "signed": False, "ctype": f"ap_uint<{pw}>"}
        rp = self.scratch(nm + ":recip", rows, inv_t, extra_bits=PACK)
        self.emit(
            nm, _bits(inv_t) + W + 2, op=RECIPN, n0=rows, a0=den, a_s0=1, tb=tb, tbits=inv_bits, vw=W, d0=rp, d_s0=1,
            **_cast_fields(inv_t, 0),
        )  # fmt: skip
        guard = self.table({"width": 1, "frac": 0, "signed": False, "ctype": "ap_uint<1>"}, [0, 0, 0, 1])
        rz = self.scratch(nm + ":recip_nz", rows, inv_t, extra_bits=PACK)
        self.emit(
            nm, pw + 3, op=SIGMUL, n0=rows, a0=rp, a_s0=1, b_src=B_RAM, b0=den, b_s0=1, tb=guard, ix_half=2,
            d0=rz, d_s0=1, **_cast_fields(packed_t, 0),
        )  # fmt: skip
        ctx = self.scratch(nm + ":context", rows * n, ct)
        sh = int(num_t["frac"]) + int(inv_t["frac"]) + W - 1 - F - int(ct["frac"])
        bits = _bits(num_t) + _bits(inv_t) + W + 1
        if bits > 63:
            raise HwflowError(
                f"layer '{nm}': the normaliser's shifted product needs {bits} bits (> 63): narrow its num/den"
            )
        self.emit(
            nm, bits, op=SOFTOUT, n0=rows, n1=n, a0=num, a_s0=n, a_s1=1, b_src=B_RAM,
            b0=rz, b_s0=1, p_sh=-(W - 1), d0=ctx, d_s0=n, d_s1=1, **_cast_fields(ct, sh),
        )  # fmt: skip
        return ctx


def _magic(n: int, width: int) -> tuple[int, int]:
    """Return (M, k) with floor(x * M / 2^k) == floor(x / n) for every 0 <= x < 2^width (Granlund-Montgomery)."""
    w = max(width, 1)
    k = w + max(math.ceil(math.log2(n)), 0)
    m = -(-(1 << k) // n)
    for x in (0, n - 1, n, (1 << w) - 1, ((1 << w) - 1) // n * n, ((1 << w) - 1) // n * n - 1):
        if x >= 0 and (x * m) >> k != x // n:
            raise HwflowError(f"no exact magic-number division by {n} on {w} bits")
    return m, k


def _check_hazards(prog: Program) -> None:
    """Raise if an instruction reads a RAM word that one of its earlier results wrote: the datapath reads a step
    when it issues and writes its result PIPELINE_DEPTH clocks later (and ``emulate`` reads every operand first)."""
    for ins in prog.instrs:
        f = ins.f
        if f["op"] == HALT:
            continue
        d = _addr(f, "d", inner=False)[..., 0].ravel()
        first = np.full(max(prog.ram_size, 1), d.size, np.int64)  # element index of the first write of each word
        np.minimum.at(first, d, np.arange(d.size))
        reads = [_addr(f, "a")] + ([_addr(f, "b")] if f["b_src"] == B_RAM else [])
        for r in reads:
            r = np.broadcast_to(r, (f["n0"], f["n1"], f["n2"])).reshape(d.size, -1)
            bad = first[r] < np.arange(d.size)[:, None]
            if bad.any():
                word = int(r[bad][0])
                raise HwflowError(
                    f"serial engine: an instruction of layer '{ins.layer}' reads RAM word {word} after writing it; "
                    "give its output words of their own (hwflow/rtl/serial.py Compiler.alloc)"
                )


def compile_graph(graph: dict, arrays: dict) -> Program:
    """Return the serial-engine Program of a neutral graph (raise HwflowError naming a layer it cannot lower)."""
    return Compiler(graph, arrays).compile()


# --- emulator: the datapath's arithmetic, vectorised over samples and loop nests ---------------------------------
def cast(v, sh, rnd: int, ovf: int, w: int, sgn: int):
    """Return the cast unit's output: shift right by sh (left when negative) with ap_fixed rounding mode rnd, then
    overflow mode ovf into a w-bit (signed if sgn) integer. v: int64 or, for wide intermediates, Python ints."""
    v = np.asarray(v)
    if np.ndim(sh) == 0:
        right = max(int(sh), 0)
        v = v << max(-int(sh), 0)
        half = (1 << (right - 1)) if right else 0
        cut = right > 0
    else:
        sh = np.broadcast_to(np.asarray(sh, dtype=np.int64), v.shape)
        right = np.maximum(sh, 0)
        v = v << np.maximum(-sh, 0)
        half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
        cut = right > 0
    q = v >> right
    rem = v - (q << right)
    neg = v < 0
    if rnd == 0:
        inc = np.zeros(v.shape, bool)
    elif rnd == 1:
        inc = neg & (rem != 0)
    elif rnd == 2:
        inc = cut & (rem >= half)
    else:
        tie = {3: neg, 4: ~neg, 5: np.zeros(v.shape, bool), 6: (q & 1) == 1}[rnd]
        inc = cut & ((rem > half) | ((rem == half) & tie))
    return np.asarray(overflow(q + inc.astype(np.int64), ovf, w, sgn)).astype(np.int64)


def overflow(x, ovf: int, w: int, sgn: int):
    lo = -(1 << (w - 1)) if sgn else 0
    hi = (1 << (w - 1)) - 1 if sgn else (1 << w) - 1
    if ovf == 0:
        x = x & ((1 << w) - 1)
        return np.where(sgn & (x >> (w - 1)).astype(bool), x - (1 << w), x) if sgn else x
    if ovf == 1:
        return np.clip(x, lo, hi)
    if ovf == 2:
        return np.where((x < lo) | (x > hi), 0, x)
    return np.clip(x, -hi if sgn else 0, hi)


def wrap(x, w: int):
    return overflow(x, 0, w, 1) if w else x


def _leading_one(x, lo: int, hi: int):
    """Return the highest set bit position of x in [lo, hi) (0 when none), like the priority encoder."""
    p = np.zeros(np.shape(x), np.int64)
    for b in range(lo, hi):
        p = np.where((x >> b) & 1, b, p)
    return p


def _below_leading_one(raw, vw: int, tbits: int):
    """Return (p, s, j, rem) of the table units that take the mantissa below the leading one (1/sqrt, RECIPN): p the
    leading-one position in [1, vw) (0 when none), j the table index from the top tbits of the p bits below it, rem
    the s = max(p - tbits, 0) bits below the index (the interpolation remainder)."""
    p = _leading_one(raw, 1, vw)
    mfrac = raw & ((np.int64(1) << p) - 1)
    shv = p - tbits
    s = np.maximum(shv, 0)
    j = np.where(shv > 0, mfrac >> s, mfrac << np.maximum(-shv, 0))
    return p, s, j, mfrac & ((np.int64(1) << s) - 1)


def _addr(f: dict, key: str, inner: bool = True) -> np.ndarray:
    i0 = np.arange(f["n0"])[:, None, None]
    i1 = np.arange(f["n1"])[None, :, None]
    i2 = np.arange(f["n2"])[None, None, :] if inner else np.zeros((1, 1, 1), np.int64)
    s2 = f.get(key + "_s2", 0) if inner else 0
    base = f[key + "0"] if key != "d" else f["d0"]
    return base + i0 * f[key + "_s0"] + i1 * f[key + "_s1"] + i2 * s2


def emulate(prog: Program, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """Return (outputs, {tensor: its words when complete}) of the program on input integers x (samples, n_in),
    exactly as the datapath (RAM words are reused once a tensor is dead, so each is copied when written)."""
    S = len(x)
    ram = np.zeros((S, prog.ram_size), np.int64)
    rom = np.asarray(prog.rom, np.int64)
    tab = np.asarray(prog.tab, np.int64)
    ib, n_in, _, _ = prog.inp
    ram[:, ib : ib + n_in] = x
    snap = {}
    for pc, ins in enumerate(prog.instrs):
        f = ins.f
        op = f["op"]
        if op == HALT:
            break
        a = ram[:, _addr(f, "a")]  # (S, n0, n1, n2)
        if f["b_src"] == B_RAM:
            b = ram[:, _addr(f, "b")]
        elif f["b_src"] == B_ROM:
            b = rom[_addr(f, "b")][None]
        else:
            b = np.full((1, 1, 1, 1), f["imm_b"], np.int64)
        cast_args = (f["c_rnd"], f["c_ovf"], f["c_w"], f["c_sgn"])
        sh = f["c_sh"]
        if op == DOT:
            p = a * b
            p = p >> f["p_sh"] if f["p_sh"] >= 0 else p << -f["p_sh"]
            acc = p.sum(axis=-1)
            if f["use_c"]:
                c = rom[_addr(f, "c", inner=False)][..., 0][None]
                acc = acc + (c << f["c_shl"])
            v = wrap(acc, f["acc_w"])
            if f["mul_en"]:
                v = v.astype(object) * f["post_mul"] if ins.bits > 63 else v * f["post_mul"]
            if f["div_en"]:
                mag = (np.abs(v).astype(object) * f["div_m"]) >> f["div_k"]
                v = np.where(v < 0, -mag, mag).astype(np.int64)
        elif op == MAX:
            v = a.max(axis=-1)
        elif op == ADD:
            bb = b[..., 0] << f["sb"]
            v = (a[..., 0] << f["sa"]) + (-bb if f["neg"] else bb)
            if f["relu"]:
                v = np.maximum(v, 0)
        elif op == SIGMUL:
            bv = b[..., 0]
            k = bv >> f["ix_sh"] if f["ix_sh"] >= 0 else bv << -f["ix_sh"]
            idx = np.clip(k, -f["ix_half"], f["ix_half"] - 1) + f["ix_half"]
            v = a[..., 0] * tab[f["tb"] + idx]
        elif op == EXP:
            r = a[..., 0]
            t1 = tab[f["tb"] + (r >> f["lo_bits"])]
            v = t1 if f["single"] else t1 * tab[f["tb2"] + (r & ((1 << f["lo_bits"]) - 1))]
        elif op == RECIP:
            s = a[..., 0]
            p = _leading_one(s >> f["sf"], 1, f["sint"])
            mfrac = (s >> p) & ((1 << f["sf"]) - 1)
            kk = f["kk"]
            if kk > 0:
                idx, rem = mfrac >> kk, mfrac & ((1 << kk) - 1)
            else:
                idx, rem = mfrac << -kk, np.zeros_like(mfrac)
            t0, t1 = tab[f["tb"] + idx], tab[f["tb"] + idx + 1]
            v = (t0 << max(kk, 0)) + (t1 - t0) * rem
        elif op == SOFTOUT:  # (a * 1/x << -p_sh) >> p: a static left shift first keeps the shift by p exact
            bv = b[..., 0]
            v = ((a[..., 0] * (bv >> PACK)) << max(-f["p_sh"], 0)) >> (bv & ((1 << PACK) - 1))
        elif op == RECIPN:  # 1/m of raw = m 2^p, m's fraction = the p bits below the leading one (cosFormer)
            p, s, j, rem = _below_leading_one(a[..., 0], f["vw"], f["tbits"])
            t0, t1 = tab[f["tb"] + j], tab[f["tb"] + j + 1]
            v = (t0 << s) + (t1 - t0) * rem
            sh = f["c_sh"] + s
        elif op == RSQRT:
            tb_ = f["tbits"]
            pos, s, j, rem = _below_leading_one(a[..., 0], f["vw"], tb_)
            bexp = pos - f["vf"]
            odd = bexp & 1
            e = (bexp - odd) >> 1
            base = f["tb"] + odd * ((1 << tb_) + 1) + j
            t0, t1 = tab[base], tab[base + 1]
            v = (t0 << s) + (t1 - t0) * rem
            sh = f["c_sh"] + s
        r = cast(v, sh, *cast_args)
        if f["add_en"]:
            r = overflow(r + f["imm2"], f["o2_ovf"], f["c_w"], f["c_sgn"])
        if op in (RECIP, RECIPN):
            r = (r << PACK) | p
        elif op == RSQRT:
            rr = r << f["ish"]
            rr = np.where(e >= 0, rr >> np.maximum(e, 0), rr << np.maximum(-e, 0))
            r = rr & ((1 << f["iw"]) - 1)
        d = _addr(f, "d", inner=False)[..., 0]
        r = np.broadcast_to(r, (S,) + d.shape)
        ram[:, d.ravel()] = r.reshape(S, -1)
        for t in prog.done.get(pc, []):
            base, n, _ = prog.tensors[t]
            snap[t] = ram[:, base : base + n].copy()
    ob, n_out, _, _ = prog.out
    return ram[:, ob : ob + n_out].copy(), snap


def to_raw(values: np.ndarray, t: dict) -> np.ndarray:
    """Return the integer representations of float values of neutral type t."""
    return _int(t, values)


# --- Verilog -----------------------------------------------------------------------------------------------------
def _clog2(n: int) -> int:
    return max(int(n - 1).bit_length(), 1)


def _hex_lines(values, width: int) -> str:
    digits = (width + 3) // 4
    mask = (1 << width) - 1
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values)


def pack_program(prog: Program) -> tuple[list[int], dict, int]:
    """Return (instruction words, field -> (offset, bits), word width) of the program ROM."""
    fb = prog.field_bits()
    offs, pos = {}, 0
    for name in FIELDS:
        offs[name] = (pos, fb[name])
        pos += fb[name]
    words = []
    for ins in prog.instrs:
        w = 0
        for name in FIELDS:
            o, b = offs[name]
            v = int(ins.f.get(name, 0))
            if name not in SIGNED_FIELDS and v < 0:
                raise HwflowError(f"serial engine: field {name} = {v} of layer '{ins.layer}' must be >= 0")
            w |= (v & ((1 << b) - 1)) << o
        words.append(w)
    return words, offs, pos


def rom_bits(values) -> int:
    return max(max((abs(int(v)).bit_length() for v in values), default=1) + 1, 2)


VERILOG = r"""// hwflow serial engine for {name}: {n_ins} instructions, {ram_n} RAM words x {rw} bits,
// weight ROM {rom_n} x {ww}, table ROM {tab_n} x {tw}, datapath {xw} bits, {depth}-stage pipeline
// (generated by hwflow/rtl/serial.py; its arithmetic is serial.emulate's)
module {name} (
    input wire clk,
    input wire rst,
    input wire in_valid,
    output wire in_ready,
    input wire [{iw}-1:0] in_data,
    output reg out_valid,
    output reg [{ow}-1:0] out_data,
    output reg out_last
);
  localparam XW = {xw};
  localparam RW = {rw};
  localparam AW = {aw};
  localparam MW = {mw};
  localparam PMW = {pmw};
  localparam signed [XW-1:0] ONE = 1;
  localparam signed [XW-1:0] ALL = -1;  // masks of the low n bits: ~(ALL <<< n), no carry chain
  localparam S_LOAD = 0, S_FETCH = 1, S_DEC = 2, S_RUN = 3, S_DRAIN = 4, S_O0 = 5, S_O1 = 6, S_INS = 7;

  // memories: program, weights (two read ports), tables (two read ports), activations (two copies written
  // together, one per read port: two reads and one write per clock)
  reg [{pw}-1:0] prog [0:{n_ins}-1];
  reg [{ww}-1:0] wrom [0:{rom_n}-1];
  reg [{tw}-1:0] trom [0:{tab_n}-1];
  reg [RW-1:0] ram_a [0:{ram_n}-1];
  reg [RW-1:0] ram_b [0:{ram_n}-1];
  initial begin
    $readmemh("{name}_prog.mem", prog);
    $readmemh("{name}_wrom.mem", wrom);
    $readmemh("{name}_trom.mem", trom);
    $readmemh("{name}_ram.mem", ram_a);  // zeros: the frames around the convolutions' inputs are never written
    $readmemh("{name}_ram.mem", ram_b);
  end

  reg [3:0] state;
  reg [{pcw}-1:0] pc;
  reg [{pw}-1:0] prog_q, ins;  // the program ROM's word, then the instruction register the datapath reads
{fields}
  // loop counters and address generators (current, start of the i1 row, start of the i0 block)
  reg [{cw}-1:0] i0, i1, i2;
  reg [AW-1:0] ca, cb, cc, cd, ra1, rb1, rc1, rd1, ra0, rb0, rc0, rd0;
  reg [AW-1:0] io_cnt;
  reg [5:0] drain;

  // ---- per-instruction constants, registered (the fields are steady from decode to the end of the drain) ----
  reg signed [XW-1:0] k_lop_mask, k_sf_mask, k_lo_mask, k_aw_mask, k_aw_sbit, k_c_mask, k_c_sbit, k_c_hi, k_c_lo;
  reg signed [XW-1:0] k_c_lo2, k_iw_mask, k_acc_mask, k_tb_odd;
  reg signed [PMW-1:0] k_pmb;
  reg [9:0] k_ixr, k_ixl, k_pshr, k_pshl;  // signed shifts split into right and left amounts (no negation in the path)
  reg signed [XW-1:0] k_half_lo, k_half_hi, k_half_top;  // the sigmoid index clamp: -half, half - 1, 2 half - 1
  wire below = f_op == {RSQRT} || f_op == {RECIPN};  // table units addressed by the bits below the leading one
  always @(posedge clk) begin
    k_lop_mask <= below ? ((ONE <<< f_vw) - ONE) & ~ONE : ((ONE <<< f_sint) - ONE) & ~ONE;
    k_sf_mask <= (ONE <<< f_sf) - ONE;
    k_lo_mask <= (ONE <<< f_lo_bits) - ONE;
    k_aw_mask <= (ONE <<< f_acc_w) - ONE;
    k_aw_sbit <= ONE <<< (f_acc_w - 1);
    k_c_mask <= (ONE <<< f_c_w) - ONE;
    k_c_sbit <= ONE <<< (f_c_w - 1);
    k_c_hi <= f_c_sgn ? (ONE <<< (f_c_w - 1)) - ONE : (ONE <<< f_c_w) - ONE;
    k_c_lo <= !f_c_sgn ? 0 : (f_c_ovf == 3 ? ONE - (ONE <<< (f_c_w - 1)) : -(ONE <<< (f_c_w - 1)));
    k_c_lo2 <= !f_c_sgn ? 0 : (f_o2_ovf == 3 ? ONE - (ONE <<< (f_c_w - 1)) : -(ONE <<< (f_c_w - 1)));
    k_iw_mask <= (ONE <<< f_iw) - ONE;
    k_tb_odd <= (ONE <<< f_tbits) + ONE;
    k_pmb <= f_div_en ? $signed({{1'b0, f_div_m}}) : f_post_mul;
    k_half_lo <= -$signed({{1'b0, f_ix_half}});
    k_half_hi <= $signed({{1'b0, f_ix_half}}) - ONE;
    k_half_top <= 2 * $signed({{1'b0, f_ix_half}}) - ONE;
    k_ixr <= f_ix_sh >= 0 ? f_ix_sh : 0;
    k_ixl <= f_ix_sh < 0 ? -f_ix_sh : 0;
    k_pshr <= f_p_sh >= 0 ? f_p_sh : 0;
    k_pshl <= f_p_sh < 0 ? -f_p_sh : 0;
  end

  // ---- memory ports: an issued step's addresses go to the memories, the words come back one clock later ----
  reg [RW-1:0] ram_qa, ram_qb;
  reg [{ww}-1:0] wq1, wq2;
  reg [{tw}-1:0] tq1, tq2;
  reg [AW-1:0] ta1, ta2;
  reg we_p;
  reg [AW-1:0] wa_p;
  reg signed [XW-1:0] wd_p;
  wire signed [XW-1:0] in_ext = {in_ext};
  wire ram_we = (state == S_LOAD && in_valid) || we_p;
  wire [AW-1:0] ram_wa = state == S_LOAD ? {in_base} + io_cnt : wa_p;
  wire [RW-1:0] ram_wd = state == S_LOAD ? in_ext[RW-1:0] : wd_p[RW-1:0];
  wire [AW-1:0] ram_aa = state == S_O0 ? {out_base} + io_cnt : ca;
  always @(posedge clk) begin
    if (ram_we) ram_a[ram_wa] <= ram_wd;
    ram_qa <= ram_a[ram_aa];
  end
  always @(posedge clk) begin
    if (ram_we) ram_b[ram_wa] <= ram_wd;
    ram_qb <= ram_b[cb];
  end
  always @(posedge clk) begin
    wq1 <= wrom[cb];
    wq2 <= wrom[cc];
  end
  always @(posedge clk) begin
    tq1 <= trom[ta1];
    tq2 <= trom[ta2];
  end
  assign in_ready = state == S_LOAD;

  // ---- arithmetic helpers ----
  // overflow into the cast's type: mode 0 wraps (mask, sign-extend), 2 zeroes, 1 and 3 clamp to [lo, hi]
  function signed [XW-1:0] ovf_fn(input signed [XW-1:0] x, input [1:0] mode, input sgn, input signed [XW-1:0] lo);
    begin
      case (mode)
        2'd0: ovf_fn = (sgn && (x & k_c_sbit) != 0) ? x | ~k_c_mask : x & k_c_mask;
        2'd2: ovf_fn = (x < lo || x > k_c_hi) ? 0 : x;
        default: ovf_fn = x < lo ? lo : (x > k_c_hi ? k_c_hi : x);
      endcase
    end
  endfunction

  // highest set bit of an 8-bit group of the leading-one unit's input (0 when none; the input is masked to the
  // unit's [lo, hi) bit range before)
  function [2:0] lop8(input [7:0] x);
    integer b;
    begin
      lop8 = 0;
      for (b = 1; b < 8; b = b + 1) if (x[b]) lop8 = b;
    end
  endfunction

  // ---- issue: one step per clock in S_RUN (valid, first and last step of a result, destination) ----
  wire last2 = i2 == f_n2 - 1;
  wire last1 = i1 == f_n1 - 1;
  wire last0 = i0 == f_n0 - 1;
  wire issue = state == S_RUN;
  reg [{depth}:1] v_p, f_p, l_p;
  reg [{depth}*AW-1:0] d_p;  // destination of stage k: d_p[(k-1)*AW +: AW]
  always @(posedge clk) begin
    v_p <= {{v_p[{depth}-1:1], issue}};
    f_p <= {{f_p[{depth}-1:1], i2 == 0}};
    l_p <= {{l_p[{depth}-1:1], last2}};
    d_p <= {{d_p[({depth}-1)*AW-1:0], cd}};
  end

  // ---- stage 2: operands ----
  reg signed [XW-1:0] a2, b2, c2;
  always @(posedge clk) begin
    a2 <= $signed(ram_qa);
    b2 <= f_b_src == 0 ? $signed(ram_qb) : (f_b_src == 1 ? $signed(wq1) : f_imm_b);
    c2 <= $signed(wq2);
  end

  // ---- stages 3-7: table addresses ----
  // 3: sigmoid index scaled; the leading-one unit's input (1/sqrt: var; reciprocal: sum >> frac bits), masked
  reg signed [XW-1:0] a3, b3, c3, sk3, z3;
  always @(posedge clk) begin
    a3 <= a2; b3 <= b2; c3 <= c2;
    sk3 <= k_ixl != 0 ? b2 <<< k_ixl : b2 >>> k_ixr;
    z3 <= (below ? a2 : a2 >>> f_sf) & k_lop_mask;
  end
  // 4: sigmoid index clamped and offset by half the table; leading one of each 8-bit group (4b: of the highest
  // group holding a one: the leading-one position)
  wire [{lopw}-1:0] z3w = z3[XW-1:0];
  reg signed [XW-1:0] a4, b4, c4, sidx4;
  reg [{lopg}-1:0] any4;
  reg [3*{lopg}-1:0] loc4;
  integer g;
  always @(posedge clk) begin
    a4 <= a3; b4 <= b3; c4 <= c3;
    sidx4 <= sk3 < k_half_lo ? 0 : (sk3 > k_half_hi ? k_half_top : sk3 - k_half_lo);
    for (g = 0; g < {lopg}; g = g + 1) begin
      any4[g] <= z3w[8 * g +: 8] != 0;
      loc4[3 * g +: 3] <= lop8(z3w[8 * g +: 8]);
    end
  end
  reg signed [XW-1:0] a4b, b4b, c4b, sidx4b;
  reg [6:0] p4;
  always @(posedge clk) begin
    a4b <= a4; b4b <= b4; c4b <= c4; sidx4b <= sidx4;
{lop_groups}
  end
  wire signed [9:0] sel4 = below ? $signed({{3'b0, p4}}) - $signed({{1'b0, f_tbits}}) : f_kk;
  // 5: mantissa (1/sqrt: bits below the leading one; reciprocal: sum >> position, frac bits), octave shift
  reg signed [XW-1:0] a5, b5, c5, sidx5, mf5;
  reg signed [9:0] bexp5;
  reg [9:0] sr5, sl5;
  always @(posedge clk) begin
    a5 <= a4b; b5 <= b4b; c5 <= c4b; sidx5 <= sidx4b;
    mf5 <= below ? a4b & ~(ALL <<< p4) : (a4b >>> p4) & k_sf_mask;
    sr5 <= sel4 > 0 ? sel4 : 0;  // index shift: 1/sqrt octave (position - table bits), reciprocal kk
    sl5 <= sel4 < 0 ? -sel4 : 0;
    bexp5 <= $signed({{3'b0, p4}}) - $signed({{1'b0, f_vf}});
  end
  // 6: table index and interpolation remainder (shift by sel: 1/sqrt octave shift, reciprocal kk), exponent
  reg signed [XW-1:0] a6, b6, c6, sidx6, idx6, rem6;
  reg signed [9:0] rdsh6;
  reg signed [7:0] rexp6;
  reg odd6;
  always @(posedge clk) begin
    a6 <= a5; b6 <= b5; c6 <= c5; sidx6 <= sidx5;
    idx6 <= sl5 != 0 ? mf5 <<< sl5 : mf5 >>> sr5;
    rem6 <= mf5 & ~(ALL <<< sr5);
    rdsh6 <= $signed(sr5);
    rexp6 <= (bexp5 - $signed({{9'b0, bexp5[0]}})) >>> 1;
    odd6 <= bexp5[0];
  end
  // values carried unchanged to the stages that use them, as shift registers (like d_p): the leading-one position
  // p (made in 4b, packed beside the reciprocal in 25), the table shift rdsh (made in 6; interpolation shift in
  // 10, 1/sqrt cast shift in 18) and the 1/sqrt half exponent rexp (made in 6, applied in 25). The delays count
  // the stages 11b and 16b too.
  reg [22*7-1:0] p_q;      // p4 delayed by k clocks: p_q[(k-1)*7 +: 7]
  reg [13*10-1:0] rdsh_q;  // rdsh6 delayed by k clocks: rdsh_q[(k-1)*10 +: 10]
  reg [20*8-1:0] rexp_q;   // rexp6 delayed by k clocks: rexp_q[(k-1)*8 +: 8]
  always @(posedge clk) begin
    p_q <= {{p_q[21*7-1:0], p4}};
    rdsh_q <= {{rdsh_q[12*10-1:0], rdsh6}};
    rexp_q <= {{rexp_q[19*8-1:0], rexp6}};
  end
  wire [6:0] p24 = p_q[21*7 +: 7];
  wire signed [9:0] rdsh9 = rdsh_q[2*10 +: 10];
  wire signed [9:0] rdsh17 = rdsh_q[12*10 +: 10];
  wire signed [7:0] rexp24 = rexp_q[19*8 +: 8];
  // 7: table addresses (registered; the table ROM's words come back in stage 8)
  reg signed [XW-1:0] a7, b7, c7, rem7;
  wire signed [XW-1:0] rs_base6 = f_tb + (odd6 ? k_tb_odd : 0) + idx6;
  always @(posedge clk) begin
    a7 <= a6; b7 <= b6; c7 <= c6; rem7 <= rem6;
    case (f_op)
      {SIGMUL}: begin ta1 <= f_tb + sidx6; ta2 <= 0; end
      {EXP}: begin ta1 <= f_tb + (a6 >>> f_lo_bits); ta2 <= f_tb2 + (a6 & k_lo_mask); end
      {RECIP}, {RECIPN}: begin ta1 <= f_tb + idx6; ta2 <= f_tb + idx6 + 1; end
      {RSQRT}: begin ta1 <= rs_base6; ta2 <= rs_base6 + 1; end
      default: begin ta1 <= 0; ta2 <= 0; end
    endcase
  end
  reg signed [XW-1:0] a8, b8, c8, rem8;
  always @(posedge clk) begin
    a8 <= a7; b8 <= b7; c8 <= c7; rem8 <= rem7;
  end

  // ---- stages 9-13: multiply (two registered partial products), accumulate ----
  reg signed [MW-1:0] ma9, mb9;
  reg signed [XW-1:0] a9, as9, bs9, acc09;
  reg [{tw}-1:0] t9;
  reg [{pack}-1:0] bp9;
  always @(posedge clk) begin
    a9 <= a8; bp9 <= b8[{pack}-1:0]; t9 <= tq1;
    case (f_op)
      {SIGMUL}: begin ma9 <= a8; mb9 <= $signed({{1'b0, tq1}}); end
      {EXP}: begin ma9 <= $signed({{1'b0, tq1}}); mb9 <= $signed({{1'b0, tq2}}); end
      {RECIP}, {RECIPN}, {RSQRT}: begin ma9 <= $signed({{1'b0, tq2}}) - $signed({{1'b0, tq1}}); mb9 <= rem8; end
      {SOFTOUT}: begin ma9 <= a8; mb9 <= b8 >>> {pack}; end
      default: begin ma9 <= a8; mb9 <= b8; end
    endcase
    as9 <= a8 <<< f_sa;
    bs9 <= b8 <<< f_sb;
    acc09 <= f_use_c ? c8 <<< f_c_shl : 0;
  end
{mul_tiles}
  reg signed [XW-1:0] a10, addv10, acc010, t1sh10, t10;
  reg [{pack}-1:0] bp10;
  always @(posedge clk) begin
    a10 <= a9; bp10 <= bp9; acc010 <= acc09;
    addv10 <= f_neg ? as9 - bs9 : as9 + bs9;
    t1sh10 <= $signed({{1'b0, t9}}) <<< rdsh9;
    t10 <= $signed({{1'b0, t9}});
  end
{mul_groups}
  reg signed [XW-1:0] a11, addv11, acc011, t1sh11, t11;
  reg [{pack}-1:0] bp11;
  always @(posedge clk) begin
    a11 <= a10; bp11 <= bp10; acc011 <= acc010;
    t1sh11 <= t1sh10; t11 <= t10;
    addv11 <= f_relu && addv10 < 0 ? 0 : addv10;
  end
{mul_sum}
  reg signed [XW-1:0] a11b, addv11b, acc011b, t1sh11b, t11b;
  // the product's shift in 12, one left or right shift: a DOT's static one; SOFTOUT's static left shift minus the
  // leading-one position p (x << L >> p = x << (L - p) or x >> (p - L), exact either way)
  reg [9:0] psl11b, psr11b;
  always @(posedge clk) begin
    a11b <= a11; acc011b <= acc011;
    t1sh11b <= t1sh11; t11b <= t11; addv11b <= addv11;
    psl11b <= f_op == {SOFTOUT} ? (k_pshl > bp11 ? k_pshl - bp11 : 0) : k_pshl;
    psr11b <= f_op == {SOFTOUT} ? (k_pshl > bp11 ? 0 : bp11 - k_pshl) : k_pshr;
  end
  reg signed [XW-1:0] e12, acc012;
  always @(posedge clk) begin
    acc012 <= acc011b;
    case (f_op)
      {DOT}, {SOFTOUT}: e12 <= psl11b != 0 ? prod11b <<< psl11b : prod11b >>> psr11b;
      {MAX}: e12 <= a11b;
      {ADD}: e12 <= addv11b;
      {EXP}: e12 <= f_single ? t11b : prod11b;
      {RECIP}, {RECIPN}, {RSQRT}: e12 <= t1sh11b + prod11b;
      default: e12 <= prod11b;
    endcase
  end
  // 13: the accumulator (a result is complete when its last step leaves this stage)
  reg signed [XW-1:0] acc;
  always @(posedge clk) begin
    case (f_op)
      {DOT}: acc <= (f_p[14] ? acc012 : acc) + e12;
      {MAX}: acc <= (f_p[14] || e12 > acc) ? e12 : acc;
      default: acc <= e12;
    endcase
  end

  // ---- stages 14-19: wrap to accum_t, post multiply (two partial products) / exact division ----
  reg signed [XW-1:0] x14, w14;
  always @(posedge clk) begin
    x14 <= acc;
    w14 <= f_acc_w == 0 ? acc : ((acc & k_aw_sbit) != 0 ? acc | ~k_aw_mask : acc & k_aw_mask);
  end
  reg signed [XW-1:0] x15, w15, pa15;
  always @(posedge clk) begin
    x15 <= x14; w15 <= w14;
    pa15 <= f_div_en && w14 < 0 ? -w14 : w14;
  end
{pm_tiles}
  reg signed [XW-1:0] x16, w16;
  always @(posedge clk) begin
    x16 <= x15; w16 <= w15;
  end
{pm_groups}
  reg signed [XW-1:0] x16b, w16b;
  always @(posedge clk) begin
    x16b <= x16; w16b <= w16;
  end
  reg signed [XW-1:0] x17, w17, pm17;
  always @(posedge clk) begin
    x17 <= x16b; w17 <= w16b;
{pm_sum}
  end
  reg signed [XW-1:0] x18, w18, pm18, dq18;
  reg signed [9:0] csh18;
  always @(posedge clk) begin
    x18 <= x17; w18 <= w17; pm18 <= pm17;
    dq18 <= pm17 >>> f_div_k;
    csh18 <= below ? $signed(f_c_sh) + rdsh17 : $signed(f_c_sh);
  end
  // 19: the cast's input (a DOT's post value, every other unit's result) and shift
  reg signed [XW-1:0] cin19, half19, below19;
  reg signed [9:0] csh19;
  reg [9:0] csr19, csl19;
  always @(posedge clk) begin
    if (f_op != {DOT}) cin19 <= x18;
    else if (f_div_en) cin19 <= w18 < 0 ? -dq18 : dq18;
    else cin19 <= f_mul_en ? pm18 : w18;
    csh19 <= csh18;
    csr19 <= csh18 > 0 ? csh18 : 0;
    csl19 <= csh18 < 0 ? -csh18 : 0;
    half19 <= ONE <<< (csh18 - 1);  // the round bit's position, and the bits below it (the sticky bits)
    below19 <= ~(ALL <<< (csh18 - 1));
  end

  // ---- stages 20-24: cast (shift with round and sticky bits | round | overflow), added constant ----
  reg signed [XW-1:0] q20;
  reg rbit20, sticky20, neg20;
  reg [2:0] rnd20;
  always @(posedge clk) begin
    q20 <= csl19 != 0 ? cin19 <<< csl19 : cin19 >>> csr19;
    rbit20 <= csh19 > 0 && (cin19 & half19) != 0;
    sticky20 <= csh19 > 1 && (cin19 & below19) != 0;
    neg20 <= cin19[XW-1];
  end
  reg inc20;
  always @* begin
    case (f_c_rnd)
      3'd1: inc20 = neg20 && (rbit20 || sticky20);
      3'd2: inc20 = rbit20;
      3'd3: inc20 = rbit20 && (sticky20 || neg20);
      3'd4: inc20 = rbit20 && (sticky20 || !neg20);
      3'd5: inc20 = rbit20 && sticky20;
      3'd6: inc20 = rbit20 && (sticky20 || q20[0]);
      default: inc20 = 0;
    endcase
  end
  reg signed [XW-1:0] s21;
  always @(posedge clk) begin
    s21 <= q20 + inc20;
  end
  reg signed [XW-1:0] cv22;
  always @(posedge clk) begin
    cv22 <= ovf_fn(s21, f_c_ovf, f_c_sgn, k_c_lo);
  end
  reg signed [XW-1:0] cv23, t23;
  always @(posedge clk) begin
    cv23 <= cv22;
    t23 <= cv22 + f_imm2;
  end
  reg signed [XW-1:0] cv24;
  always @(posedge clk) begin
    cv24 <= f_add_en ? ovf_fn(t23, f_o2_ovf, f_c_sgn, k_c_lo2) : cv23;
  end

  // ---- stages 25-26: the word written (reciprocal: packed with its leading-one position; 1/sqrt: shifted by
  // half the exponent) ----
  reg signed [XW-1:0] cv25, rsq25, pk25;
  reg [7:0] rexr25, rexl25;
  always @(posedge clk) begin
    rexr25 <= rexp24 >= 0 ? rexp24 : 0;
    rexl25 <= rexp24 < 0 ? -rexp24 : 0;
    cv25 <= cv24;
    rsq25 <= cv24 <<< f_ish;
    pk25 <= (cv24 <<< {pack}) | p24;
  end
  always @(posedge clk) begin
    we_p <= v_p[{depth}-1] && l_p[{depth}-1];
    wa_p <= d_p[({depth}-2)*AW +: AW];
    case (f_op)
      {RECIP}, {RECIPN}: wd_p <= pk25;
      {RSQRT}: wd_p <= (rexl25 != 0 ? rsq25 <<< rexl25 : rsq25 >>> rexr25) & k_iw_mask;
      default: wd_p <= cv25;
    endcase
  end

  // ---- controller ----
  always @(posedge clk) begin
    out_valid <= 0;
    out_last <= 0;
    if (rst) begin
      state <= S_LOAD;
      io_cnt <= 0;
      pc <= 0;
    end else begin
      case (state)
        S_LOAD:
        if (in_valid) begin
          if (io_cnt == {n_in} - 1) begin
            io_cnt <= 0;
            pc <= 0;
            state <= S_FETCH;
          end else io_cnt <= io_cnt + 1;
        end
        S_FETCH: begin
          prog_q <= prog[pc];
          state <= S_INS;
        end
        S_INS: begin
          ins <= prog_q;
          state <= S_DEC;
        end
        S_DEC:
        if (f_op == {HALT}) state <= S_O0;
        else begin
          i0 <= 0;
          i1 <= 0;
          i2 <= 0;
          ca <= f_a0; ra1 <= f_a0; ra0 <= f_a0;
          cb <= f_b0; rb1 <= f_b0; rb0 <= f_b0;
          cc <= f_c0; rc1 <= f_c0; rc0 <= f_c0;
          cd <= f_d0; rd1 <= f_d0; rd0 <= f_d0;
          state <= S_RUN;
        end
        S_RUN:
        if (!last2) begin
          i2 <= i2 + 1;
          ca <= ca + f_a_s2;
          cb <= cb + f_b_s2;
        end else begin
          i2 <= 0;
          if (!last1) begin
            i1 <= i1 + 1;
            ra1 <= ra1 + f_a_s1; ca <= ra1 + f_a_s1;
            rb1 <= rb1 + f_b_s1; cb <= rb1 + f_b_s1;
            rc1 <= rc1 + f_c_s1; cc <= rc1 + f_c_s1;
            rd1 <= rd1 + f_d_s1; cd <= rd1 + f_d_s1;
          end else if (!last0) begin
            i1 <= 0;
            i0 <= i0 + 1;
            ra0 <= ra0 + f_a_s0; ra1 <= ra0 + f_a_s0; ca <= ra0 + f_a_s0;
            rb0 <= rb0 + f_b_s0; rb1 <= rb0 + f_b_s0; cb <= rb0 + f_b_s0;
            rc0 <= rc0 + f_c_s0; rc1 <= rc0 + f_c_s0; cc <= rc0 + f_c_s0;
            rd0 <= rd0 + f_d_s0; rd1 <= rd0 + f_d_s0; cd <= rd0 + f_d_s0;
          end else begin
            drain <= {drain};
            state <= S_DRAIN;
          end
        end
        S_DRAIN:  // the last result reaches the RAM before the next instruction reads (or its fields change)
        if (drain == 0) begin
          pc <= pc + 1;
          state <= S_FETCH;
        end else drain <= drain - 1;
        S_O0: state <= S_O1;
        S_O1: begin
          out_valid <= 1;
          out_data <= ram_qa[{ow}-1:0];
          out_last <= io_cnt == {n_out} - 1;
          if (io_cnt == {n_out} - 1) begin
            io_cnt <= 0;
            state <= S_LOAD;
          end else begin
            io_cnt <= io_cnt + 1;
            state <= S_O0;
          end
        end
        default: state <= S_LOAD;
      endcase
    end
  end
endmodule
"""


def _tiled_mul(name: str, a: str, wa: int, b: str, wb: int) -> tuple[str, str, str]:
    """Return the Verilog of a pipelined signed product a * b (mod 2^XW) in three register stages: 18 x 18 tiles
    (17-bit unsigned chunks, the top chunk signed: one ECP5 MULT18X18D or DSP48E2 each), sums of up to three
    shifted tiles, their total ``<name>``. Returns (tiles, group sums, total) for three consecutive stages."""

    def chunks(v, w):
        n = max(1, -(-(w - 1) // MUL_SPLIT))
        out = []
        for i in range(n):
            lo = i * MUL_SPLIT
            hi = w - 1 if i == n - 1 else lo + MUL_SPLIT - 1
            out.append((lo, f"$signed({v}[{hi}:{lo}])" if i == n - 1 else f"$signed({{1'b0, {v}[{hi}:{lo}]}})"))
        return out

    tiles = [(la + lb, f"{name}_t{i}{j}", f"{x} * {y}") for i, (la, x) in enumerate(chunks(a, wa))
             for j, (lb, y) in enumerate(chunks(b, wb))]  # fmt: skip
    tiles.sort()
    t1 = [f"  reg signed [35:0] {', '.join(t for _, t, _ in tiles)};", "  always @(posedge clk) begin"]
    t1 += [f"    {t} <= {e};" for _, t, e in tiles]
    groups = [tiles[k : k + 3] for k in range(0, len(tiles), 3)]
    gn = [f"{name}_g{k}" for k in range(len(groups))]
    t2 = [f"  reg signed [XW-1:0] {', '.join(gn)};", "  always @(posedge clk) begin"]
    for g, grp in zip(gn, groups):
        t2.append(f"    {g} <= " + " + ".join(f"({t} <<< {sh})" for sh, t, _ in grp) + ";")
    t3 = f"    {name} <= " + " + ".join(gn) + ";"
    return "\n".join(t1) + "\n  end", "\n".join(t2) + "\n  end", t3


def _lop_groups(width: int) -> str:
    """Return the Verilog of the leading-one unit's second stage over ``width`` bits in 8-bit groups: one-hot the
    highest group holding a one, OR its position into p4 (shallow: no priority chain)."""
    n = width // 8
    terms = []
    for g in range(n - 1, -1, -1):
        sel = f"any4[{g}]" + (f" && any4[{n - 1}:{g + 1}] == 0" if g < n - 1 else "")
        terms.append(f"({{7{{{sel}}}}} & (7'd{8 * g} | loc4[{3 * g} +: 3]))")
    return "    p4 <= " + " |\n          ".join(terms) + ";"


def write_verilog(prog: Program, out: Path, name: str | None = None) -> dict:
    """Write <name>.v and its memory files (program, weight and table ROMs) into out; return the design facts."""
    name = name or prog.name
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    words, offs, pw = pack_program(prog)
    fields = []
    for fname in FIELDS:
        o, b = offs[fname]
        sg = "signed " if fname in SIGNED_FIELDS else ""
        fields.append(f"  wire {sg}[{b}-1:0] f_{fname} = ins[{o} +: {b}];")
    ww, tw = rom_bits(prog.rom), rom_bits(prog.tab)
    rom = prog.rom or [0]
    tab = prog.tab or [0]
    ib, n_in, iw, isg = prog.inp
    ob, n_out, ow, _ = prog.out
    aw = _clog2(max(prog.ram_size, len(rom), len(tab), 2)) + 1
    cw = _clog2(max(max(i.f[k] for k in ("n0", "n1", "n2")) for i in prog.instrs) + 1)
    rw = prog.ram_bits
    mw = max(rw, tw + 1, prog.xw // 2) + 1
    pmw = max(offs["div_m"][1] + 1, offs["post_mul"][1])
    lopw = 1 << _clog2(prog.xw)
    if lopw > 128:
        raise HwflowError(f"serial engine: datapath of {prog.xw} bits (> 128): narrow the widest accumulator")
    mt, mg, ms = _tiled_mul("prod11b", "ma9", mw, "mb9", mw)
    pt, pg, ps = _tiled_mul("pm17", "pa15", prog.xw, "k_pmb", pmw)
    text = VERILOG.format(
        name=name,
        n_ins=len(words),
        ram_n=prog.ram_size,
        rw=rw,
        rom_n=len(rom),
        ww=ww,
        tab_n=len(tab),
        tw=tw,
        xw=prog.xw,
        iw=iw,
        ow=ow,
        aw=aw,
        pw=pw,
        pcw=_clog2(len(words) + 1),
        cw=cw,
        fields="\n".join(fields),
        in_base=ib,
        out_base=ob,
        n_in=n_in,
        n_out=n_out,
        in_ext="$signed(in_data)" if isg else "$signed({1'b0, in_data})",
        pack=PACK,
        mw=mw,
        pmw=pmw,
        depth=PIPELINE_DEPTH,
        drain=PIPELINE_DEPTH - CLOCKS_FETCH - 1,  # + 1 clock at 0: the last write lands before the next read
        mul_tiles=mt,
        mul_groups=mg,
        mul_sum=f"  reg signed [XW-1:0] prod11b;\n  always @(posedge clk) begin\n{ms}\n  end",
        pm_tiles=pt,
        pm_groups=pg,
        pm_sum=ps,
        lopw=lopw,
        lopg=lopw // 8,
        lop_groups=_lop_groups(lopw),
        **{n.upper(): i for i, n in enumerate(OP_NAMES)},
    )
    (out / f"{name}.v").write_text(text)
    (out / f"{name}_prog.mem").write_text(_hex_lines(words, pw))
    (out / f"{name}_wrom.mem").write_text(_hex_lines(rom, ww))
    (out / f"{name}_trom.mem").write_text(_hex_lines(tab, tw))
    (out / f"{name}_ram.mem").write_text(("0" * ((rw + 3) // 4) + "\n") * prog.ram_size)
    return {"top": name, "files": [out / f"{name}.v"], "memdir": out, "program_bits": pw, "words": len(words)}


TESTBENCH = r"""`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1;
  always #5 clk = ~clk;
  reg [{iw}-1:0] xin [0:{n_words}-1];
  integer s = 0, k = 0, cyc = 0, done = 0, fd;
  wire in_ready, out_valid, out_last;
  wire [{ow}-1:0] out_data;
  reg in_valid;
  always @* in_valid = !rst && s < {n} && ({gaps} == 0 || (cyc % 7) != 3);
  {top} dut (.clk(clk), .rst(rst), .in_valid(in_valid), .in_ready(in_ready), .in_data(xin[s * {n_in} + k]),
      .out_valid(out_valid), .out_data(out_data), .out_last(out_last));
  initial begin
    $readmemh("x.mem", xin);
    fd = $fopen("y.txt", "w");
    #21 rst = 0;
  end
  always @(posedge clk) begin
    cyc <= cyc + 1;
    if (in_valid && in_ready) begin
      if (k == 0) $fwrite(fd, "start %0d\n", cyc);
      if (k == {n_in} - 1) begin k <= 0; s <= s + 1; end else k <= k + 1;
    end
    if (out_valid) $fwrite(fd, "%h\n", out_data);
    if (out_valid && out_last) begin
      $fwrite(fd, "last %0d\n", cyc);
      done = done + 1;
      if (done == {n}) begin $fclose(fd); $finish; end
    end
  end
endmodule
"""


# Verilator: a C++ clock loop (a timed Verilog testbench under --timing runs ~10x slower); same protocol and output
# file as TESTBENCH: inputs and outputs sampled just before each rising edge
HARNESS = r"""#include <cstdio>
#include <cstdlib>
#include <vector>
#include "V{top}.h"
#include "verilated.h"
int main(int argc, char** argv) {{
  Verilated::commandArgs(argc, argv);
  V{top}* m = new V{top};
  std::vector<unsigned long long> x;
  char buf[80];
  FILE* f = fopen("x.mem", "r");
  while (fscanf(f, "%79s", buf) == 1) x.push_back(strtoull(buf, nullptr, 16));
  fclose(f);
  FILE* o = fopen("y.txt", "w");
  const long n = {n}, n_in = {n_in};
  long s = 0, k = 0, done = 0;
  unsigned long long cyc = 0;
  m->clk = 0;
  m->rst = 1;
  m->in_valid = 0;
  for (int i = 0; i < 4; i++) {{
    m->clk = 1; m->eval();
    m->clk = 0; m->eval();
  }}
  m->rst = 0;
  while (done < n) {{
    bool v = s < n && ({gaps} == 0 || cyc % 7 != 3);
    m->in_valid = v;
    if (v) m->in_data = x[s * n_in + k];
    bool accepted = v && m->in_ready;
    bool ov = m->out_valid, ol = m->out_last;
    unsigned long long od = m->out_data;
    m->clk = 1; m->eval();
    if (accepted) {{
      if (k == 0) fprintf(o, "start %llu\n", cyc);
      if (++k == n_in) {{ k = 0; s++; }}
    }}
    if (ov) {{
      fprintf(o, "%llx\n", od);
      if (ol) {{ fprintf(o, "last %llu\n", cyc); done++; }}
    }}
    m->clk = 0; m->eval();
    cyc++;
  }}
  fclose(o);
  m->final();
  delete m;
  return 0;
}}
"""


def simulate(prog: Program, design: dict, x: np.ndarray, simulator: str, work: Path, gaps: bool = False) -> dict:
    """Run the generated engine on input integers x (samples, n_in) in Icarus or Verilator; return its outputs
    (samples, n_out) as integers and the latency/interval measured in clocks."""
    import shutil
    import subprocess
    import time

    work = Path(work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _, n_in, iw, _ = prog.inp
    _, n_out, ow, osg = prog.out
    top = design["top"]
    for mem in Path(design["memdir"]).glob(f"{top}_*.mem"):
        shutil.copy(mem, work / mem.name)
    (work / "x.mem").write_text(_hex_lines(np.asarray(x).ravel(), iw))
    tb = TESTBENCH.format(iw=iw, ow=ow, n=len(x), n_in=n_in, n_words=max(x.size, 1), top=top, gaps=int(gaps))
    (work / "tb.v").write_text(tb)
    src = [str(f) for f in design["files"]]
    t0 = time.time()
    if simulator == "iverilog":
        subprocess.run(["iverilog", "-g2012", "-o", "sim", "tb.v", *src], cwd=work, check=True, capture_output=True)
        build = time.time() - t0
        subprocess.run(["vvp", "-n", "sim"], cwd=work, check=True, capture_output=True)
    else:
        from .simulators import verilator_env

        env = verilator_env()
        (work / "harness.cpp").write_text(HARNESS.format(top=top, n=len(x), n_in=n_in, gaps=int(gaps)))
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "--top-module", top, "-Wno-fatal", "-Wno-lint"]
        cmd += ["-Wno-style", "--x-initial", "fast", "-O3", "-CFLAGS", "-O2"]
        r = subprocess.run([*cmd, "-o", "sim", "harness.cpp", *src], cwd=work, env=env, capture_output=True, text=True)
        if r.returncode:
            raise HwflowError("Verilator build failed: " + r.stderr[-2000:])
        build = time.time() - t0
        subprocess.run(["obj_dir/sim"], cwd=work, check=True, capture_output=True, env=env)
    run = time.time() - t0 - build
    lines = (work / "y.txt").read_text().split()
    starts, lasts, words = [], [], []
    it = iter(lines)
    for tok in it:
        if tok == "start":
            starts.append(int(next(it)))
        elif tok == "last":
            lasts.append(int(next(it)))
        else:
            words.append(int(tok, 16))
    y = np.asarray(words, dtype=np.int64).reshape(len(x), n_out)
    if osg:
        y = np.where(y >= 1 << (ow - 1), y - (1 << ow), y)
    lat = [b - a for a, b in zip(starts, lasts)]
    ii = np.diff(starts).tolist()
    return {
        "outputs": y,
        "latency_range": [min(lat), max(lat)],
        "interval_range": [min(ii), max(ii)] if ii else None,
        "build_s": round(build, 1),
        "run_s": round(run, 1),
    }
