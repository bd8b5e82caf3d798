"""Frame-serial ("folded") RTL for conformer graphs: G frames per clock through segments with frame windows.

The conformer adds two things to the token-serial transformer design of hwflow.rtl.fold: convolutions over time,
which need each frame's neighbours, and a strided front end, which runs at the input frame rate. Both become
*windows*: a segment that starts with a convolution reads, for its G output frames, the (G - 1) * stride + K input
frames around them from the buffer before it (zero frames outside the sequence, as hls4ml's 'same' padding):

    s0   : input frames -> frame-wise layers (feature_norm) -> strided Conv1D (window of the sample's input frames,
           2G + 1 frames for stride 2, kernel 3) -> frame-wise layers -> first attention's Q/K/V projections
    s1.. : attention of G query frames over all L keys/values (the K/V buffer), residual, token-wise layers
    sK   : depthwise conv of the convolution module (window of G + K - 1 frames of its input buffer), swish,
           pointwise conv, residual, feed-forward, norms ... (cut again at the next attention or window)
    tail : pooling, classifier, softmax (once per sample)

Frame-wise layers between the input and the strided convolution (the folded feature normalization) are evaluated
on every window frame; frames outside the clip are zeroed after them by a mask bit the controller drives (the
convolution pads *its* input with zeros). The buffers between segments hold all L frames of a sample (double
buffered, as in hwflow.rtl.fold), so they serve as the line buffers of every window and as the K/V store of
attention; the controller (in_valid/in_ready/out_valid) and the testbench are hwflow.rtl.fold's, with the window
selects wired in by ``first_input`` / ``assemble`` here.

``plan`` needs no da4ml; ``trace_plan`` / ``emulate_chain`` / ``write_project`` run in .venv-rtl.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fold import FoldError, Module, Plan, Segment, _assemble, _declare, _qkv, convert_expr, token_ops


@dataclass
class Window:
    """Frames a segment's first convolution reads around its G output frames."""

    tensor: str  # the buffered tensor read as a window (s0: the model input)
    conv: dict  # the convolution layer (conv1d or depthwise1d) consuming the window
    frames: int  # window frames per pass: (G - 1) * stride + K
    stride: int
    pad_left: int
    n_src: int  # frames of the source tensor
    pre: list = field(default_factory=list)  # frame-wise layers between the window tensor and the convolution

    @property
    def masked(self) -> bool:
        """Frames outside the source are zero at the convolution only if nothing runs on them before it."""
        return bool(self.pre)


@dataclass
class ConvSegment(Segment):
    window: Window | None = None


@dataclass
class ConvPlan(Plan):
    kind: str = "conv"


def needs_windows(graph: dict) -> bool:
    """Return True when a graph has convolutions over time (folded by this module, not hwflow.rtl.fold)."""
    return any(e["op"] == "conv1d" or (e["op"] == "depthwise_conv1d" and _filt(e) > 1) for e in graph["layers"])


def _filt(e: dict) -> int:
    return int(e["attrs"].get("filt_width", 1))


def plan(graph: dict, group: int) -> ConvPlan:
    """Return the frame-serial segment plan of a conformer graph at ``group`` frames per clock, or raise FoldError."""
    layers = [e for e in graph["layers"] if e["op"] != "input"]
    mhas = [e for e in layers if e["op"] == "mha"]
    if not mhas:
        raise FoldError("frame-serial folding needs an attention layer; set rtl.tokens_per_cycle: 0")
    L = int(mhas[0]["attrs"]["seq_len"])
    if group < 1 or L % group:
        raise FoldError(f"rtl.tokens_per_cycle = {group} must divide the number of frames after subsampling, {L}")
    shapes = {k: tuple(v["shape"]) for k, v in graph["tensors"].items()}
    if len(graph["inputs"]) != 1 or len(shapes[graph["inputs"][0]]) != 2:
        raise FoldError("frame-serial folding needs one (frames, features) input")
    x = graph["inputs"][0]
    t_in = shapes[x][0]

    def is_token(t: str) -> bool:
        return len(shapes[t]) == 2 and shapes[t][0] == L

    def frame_wise(e: dict, rows: int) -> bool:
        ok_op = e["op"] in token_ops() or (e["op"] == "depthwise_conv1d" and _filt(e) == 1)
        if e["op"] == "merge" and e["attrs"].get("op") == "concatenate" and e["attrs"].get("axis", -1) not in (-1, 1):
            return False
        return ok_op and all(shapes[t][:1] == (rows,) and len(shapes[t]) == 2 for t in e["inputs"] + [e["output"]])

    widths = {t: shapes[t][1] for t in shapes if is_token(t)}
    widths[x] = shapes[x][1]
    s0 = ConvSegment("s0", "token")
    segs, tail = [s0], ConvSegment("tail", "tail")
    rest = layers
    if t_in != L:
        # front end at the input frame rate: frame-wise layers, then the strided convolution down to L frames
        pre = []
        for n, e in enumerate(layers):
            if frame_wise(e, t_in):
                pre.append(e)
                continue
            if e["op"] == "conv1d" and is_token(e["output"]) and shapes[e["inputs"][0]][0] == t_in:
                a = e["attrs"]
                K, S = int(a["filt_width"]), int(a["stride"])
                s0.window = Window(x, e, (group - 1) * S + K, S, int(a["pad_left"]), t_in, pre)
                rest = layers[n + 1 :]
                break
            raise FoldError(
                f"layer {e['name']} ({e['op']}) runs at the input frame rate ({t_in} frames) but is neither frame-wise "
                f"nor the strided convolution down to {L} frames; set rtl.tokens_per_cycle: 0"
            )
        else:
            raise FoldError(f"no convolution maps the {t_in} input frames to the {L} frames of attention")
    in_tail = False
    for e in rest:
        if in_tail:
            tail.layers.append(e)
        elif e["op"] == "mha":
            for t, nk in zip(_qkv(e), ("key_dim", "key_dim", "value_dim")):
                widths[t] = int(e["attrs"]["num_heads"]) * int(e["attrs"][nk])
            segs[-1].project = e
            segs.append(ConvSegment(f"s{len(segs)}", "token", attend=e))
        elif e["op"] == "depthwise_conv1d" and _filt(e) > 1 and is_token(e["inputs"][0]) and is_token(e["output"]):
            K = _filt(e)
            segs.append(
                ConvSegment(
                    f"s{len(segs)}",
                    "token",
                    window=Window(e["inputs"][0], e, group + K - 1, 1, int(e["attrs"]["pad_left"]), L),
                )
            )
        elif frame_wise(e, L):
            segs[-1].layers.append(e)
        else:
            in_tail = True
            tail.layers.append(e)
    if not tail.layers:
        raise FoldError("folding needs a sequence-mixing layer (pooling) after the last frame-wise layer")
    if any(e["op"] in ("mha", "depthwise_conv1d", "conv1d") for e in tail.layers):
        raise FoldError("attention or convolution after the pooling cannot be folded; set rtl.tokens_per_cycle: 0")
    _liveness(segs, tail, x)
    order = segs + [tail]
    for s in order:
        for t in s.row_in + s.full_in + s.live_out:
            if t not in widths:
                raise FoldError(f"tensor {t} {list(shapes.get(t, ()))} crosses a segment boundary but is not per frame")
    return ConvPlan(L, group, widths, order)


def _produced(s: ConvSegment) -> set:
    out = {e["output"] for e in s.layers}
    if s.window is not None:
        out |= {e["output"] for e in s.window.pre} | {s.window.conv["output"]}
    if s.attend is not None:
        out.add(s.attend["output"])
    if s.project is not None:
        out |= set(_qkv(s.project))
    return out


def _reads(s: ConvSegment) -> list:
    got, need = set(), []
    if s.attend is not None:
        need += list(_qkv(s.attend))
        got.add(s.attend["output"])
    if s.window is not None:
        need.append(s.window.tensor)
        got |= {e["output"] for e in s.window.pre} | {s.window.conv["output"]}
    for e in s.layers:
        need += [t for t in e["inputs"] if t not in got]
        got.add(e["output"])
    if s.project is not None and s.project["inputs"][0] not in got:
        need.append(s.project["inputs"][0])
    return list(dict.fromkeys(need))


def _liveness(segs: list, tail: ConvSegment, x: str) -> None:
    """Set row_in / full_in / live_out of every segment, backwards from the tail (as hwflow.rtl.fold.plan)."""
    live = list(_reads(tail))
    tail.row_in = live
    for s in reversed(segs):
        s.live_out = list(live)
        carried = [t for t in live if t not in _produced(s)]
        live = list(dict.fromkeys(_reads(s) + carried))
        full = list(_qkv(s.attend)[1:]) if s.attend is not None else []
        s.full_in = full
        s.row_in = [t for t in live if t not in full and (s.window is None or t != s.window.tensor)]
    if segs[0].row_in and segs[0].row_in != [x]:
        raise FoldError(
            f"segment s0 reads {segs[0].row_in}: folding expects every frame tensor to derive from the input"
        )


# ----------------------------------------------------------------------------------------- tracing (.venv-rtl only)
def trace_plan(graph: dict, arrays: dict, p: ConvPlan, latency_cutoff: float, slice_bits: int) -> list[Module]:
    """Return the traced modules of a plan: each token segment on G frames (its window on (G-1)*stride+K frames),
    the tail on all frames."""
    from da4ml.trace import FixedVariableArray, FixedVariableArrayInput, HWConfig, comb_trace
    from da4ml.types import minimal_kif

    from . import trace_conformer as TC
    from . import trace_graph as T

    hw = HWConfig(1, -1, float(latency_cutoff))
    shapes = {k: tuple(v["shape"]) for k, v in graph["tensors"].items()}
    G, L = p.group, p.seq_len
    x_name = graph["inputs"][0]
    x_layer = next(e for e in graph["layers"] if e["op"] == "input")
    mods: list[Module] = []
    prev_kif: dict = {}

    def src_kif(t: str, c: int):
        return T.kif(x_layer["types"]["result"]) if t == x_name else prev_kif[(t, c)]

    for s in p.segments:
        rows = G if s.kind == "token" else L
        in_map, kifs = [], []
        w = s.window
        if w is not None:
            for j in range(w.frames):
                for c in range(p.widths[w.tensor]):
                    in_map.append(("win", j, w.tensor, c))
                    kifs.append(src_kif(w.tensor, c))
            if w.masked:
                for j in range(w.frames):
                    in_map.append(("mask", j, None, 0))
                    kifs.append((0, 1, 0))
        for r in range(rows):
            for t in s.row_in:
                for c in range(p.widths[t]):
                    in_map.append(("row", r, t, c))
                    kifs.append(src_kif(t, c))
        for t in s.full_in:
            for tok in range(L):
                for c in range(p.widths[t]):
                    in_map.append(("full", tok, t, c))
                    kifs.append(prev_kif[(t, c)])
        inp = FixedVariableArrayInput((len(in_map),), hwconf=hw)
        flat = _declare(inp, kifs)._vars
        vals: dict = {}
        masks: dict = {}
        for pos, (kind, a, t, c) in enumerate(in_map):
            if kind == "mask":
                masks[a] = flat[pos]
                continue
            n_rows = w.frames if kind == "win" else (L if kind == "full" else rows)
            vals.setdefault((kind, t), [[None] * p.widths[t] for _ in range(n_rows)])[a][c] = flat[pos]

        def arr(v, opts=inp.solver_options):
            return FixedVariableArray(np.array(v, dtype=object), opts, hwconf=hw)

        env = {t: arr(v) for (kind, t), v in vals.items() if kind != "win"}
        if s.attend is not None:
            q, k, v = _qkv(s.attend)
            env[s.attend["output"]] = T.attend(env[q], env[k], env[v], s.attend, arrays, slice_bits)
        if w is not None:
            wenv = {w.tensor: arr(vals[("win", w.tensor)])}
            for e in w.pre:  # frame-wise layers on every window frame
                xs = [wenv[t] for t in e["inputs"]]
                if e["op"] == "depthwise_conv1d":
                    y = TC.op_depthwise1d(xs[0], e, arrays, padded=True)
                else:
                    y = T.apply_layer(e, xs, arrays, (w.frames, shapes[e["output"]][-1]), slice_bits)
                wenv[e["output"]] = y.reshape((w.frames, -1))
            if w.stride == 1:  # the window's centre frames are this segment's own rows of the tensor
                env[w.tensor] = arr(vals[("win", w.tensor)][w.pad_left : w.pad_left + rows])
            src = wenv[w.conv["inputs"][0]]
            if w.masked:  # frames outside the clip are zero at the convolution's input
                mv = np.empty(src.shape, dtype=object)
                for j in range(w.frames):
                    for c in range(src.shape[1]):
                        mv[j, c] = T._as_var(T._mux(masks[j], src._vars[j, c], 0.0), hw)
                src = arr(mv)
            conv = TC.op_conv1d if w.conv["op"] == "conv1d" else TC.op_depthwise1d
            env[w.conv["output"]] = conv(src, w.conv, arrays, padded=True).reshape((rows, -1))
        for e in s.layers:
            y = T.apply_layer(e, [env[t] for t in e["inputs"]], arrays, shapes[e["output"]], slice_bits)
            env[e["output"]] = y.reshape((rows, -1)) if s.kind == "token" else y.reshape(shapes[e["output"]])
        if s.project is not None:
            for name, a in zip(_qkv(s.project), T.attention_project(env[s.project["inputs"][0]], s.project, arrays)):
                env[name] = a
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
            for key, (kk, ii, ff) in out_kif.items():
                if kk + ii + ff <= 0:
                    out_kif[key] = (kk, max(ii, 0), max(ff, 1 - max(ii, 0)))
        mods.append(Module(s, comb, in_map, out_cols, out_kif))
        prev_kif = out_kif
    return mods


def _win_src(w: Window, g: int, G: int, j: int) -> int:
    """Return the source frame of window frame j of group g (negative or >= n_src: padding)."""
    return g * G * w.stride + j - w.pad_left


def emulate_chain(mods: list[Module], p: ConvPlan, x: np.ndarray, emulate) -> tuple[np.ndarray, dict]:
    """Return (outputs, {frame tensor: (n, L, F) values}) of the folded modules run as the hardware runs them."""
    n, G = x.shape[0], p.group
    first = mods[0].seg
    x_name = first.window.tensor if first.window is not None else first.row_in[0]
    buf: dict = {x_name: x.reshape(n, -1, p.widths[x_name])}
    seen: dict = {}
    for m in mods:
        if m.seg.kind != "token":
            cols = [buf[t][:, a, c] for _, a, t, c in m.in_map]
            return emulate(m.comb, np.stack(cols, axis=1)), seen
        w = m.seg.window
        outs = {t: np.zeros((n, p.seq_len, p.widths[t])) for t in m.seg.live_out}
        for g in range(p.n_groups):
            cols = []
            for kind, a, t, c in m.in_map:
                if kind in ("win", "mask"):
                    src = _win_src(w, g, G, a)
                    inside = 0 <= src < w.n_src
                    if kind == "mask":
                        cols.append(np.full(n, 1.0 if inside else 0.0))
                    else:
                        cols.append(buf[t][:, src, c] if inside else np.zeros(n))
                else:
                    cols.append(buf[t][:, g * G + a if kind == "row" else a, c])
            y = emulate(m.comb, np.stack(cols, axis=1))
            for j, (r, t, c) in enumerate(m.out_cols):
                outs[t][:, g * G + r, c] = y[:, j]
        buf = outs
        seen.update(outs)
    raise FoldError("plan without a tail")


# ------------------------------------------------------------------------------------------------- Verilog top
def _pad_right(w: Window, p: ConvPlan) -> int:
    """Return the zero frames after the source that the last group's window reaches."""
    last = _win_src(w, p.n_groups - 1, p.group, w.frames - 1)
    return max(0, last + 1 - w.n_src)


def _zeros(bits: int) -> list[str]:
    return [f"{bits}'b0"] if bits > 0 else []


def first_input(p: ConvPlan):
    """Return the write_top hook wiring s0's input: the window of input frames of the current group from the
    registered sample (zero frames around it), and the mask bits of frames outside the clip."""

    def hook(m: Module, fmt, cnt: str):
        w = m.seg.window
        s = m.seg.name
        F, bw = p.widths[w.tensor], fmt.bw
        w_in = w.n_src * F * bw
        pr = _pad_right(w, p)
        parts = _zeros(pr * F * bw) + ["xin"] + _zeros(w.pad_left * F * bw)
        step = p.group * w.stride * F * bw
        lines = [
            f"    wire [{(w.pad_left + w.n_src + pr) * F * bw - 1}:0] {s}_xpad = {{{', '.join(parts)}}};",
            f"    wire [{w.frames * F * bw - 1}:0] {s}_win = {s}_xpad[{cnt} * {step} +: {w.frames * F * bw}];",
        ]
        one = f"{bw}'d{1 << fmt.f}"
        for e, (kind, j, _t, c) in enumerate(m.in_map):
            dst = f"{s}_in[{(e + 1) * bw - 1}:{e * bw}]"
            if kind == "win":
                lines.append(f"    assign {dst} = {s}_win[{(j * F + c + 1) * bw - 1}:{(j * F + c) * bw}];")
            elif kind == "mask":
                pos = f"({cnt} * {p.group * w.stride} + {j})"
                cond = f"{pos} >= {w.pad_left} && {pos} < {w.pad_left + w.n_src}"
                lines.append(f"    assign {dst} = ({cond}) ? {one} : {bw}'d0;")
            else:
                raise FoldError(f"s0 reads {kind} input {_t}: only its window of input frames is supported")
        return w_in, lines

    return hook


def assemble(m: Module, prev: Module, a, b, p: ConvPlan, buf: str, cnt: str | None, s: str) -> list[str]:
    """Return Verilog assigning a segment's input bus; segments with a window select G + K - 1 frames of the
    zero-padded buffer (their rows are the window's centre frames), others as hwflow.rtl.fold._assemble."""
    w = m.seg.window
    if w is None or cnt is None:
        return _assemble(m, prev, a, b, p, buf, cnt, s)
    G = p.group
    row_w = len(prev.out_cols) // G
    idx = {(t, c): j for j, (_r, t, c) in enumerate(prev.out_cols[:row_w])}
    tok = row_w * a.bw
    pr = _pad_right(w, p)
    parts = _zeros(pr * tok) + [buf] + _zeros(w.pad_left * tok)
    out = [
        f"    wire [{(w.pad_left + w.n_src + pr) * tok - 1}:0] {s}_pad = {{{', '.join(parts)}}};",
        f"    wire [{w.frames * tok - 1}:0] {s}_win = {s}_pad[{cnt} * {G * tok} +: {w.frames * tok}];",
    ]
    for e, (kind, r, t, c) in enumerate(m.in_map):
        if kind == "win":
            src, el = f"{s}_win", r * row_w + idx[(t, c)]
        elif kind == "row":
            src, el = f"{s}_win", (r + w.pad_left) * row_w + idx[(t, c)]
        elif kind == "full":
            src, el = buf, r * row_w + idx[(t, c)]
        else:
            raise FoldError(f"segment {s}: unexpected {kind} input")
        out.append(f"    assign {s}_in[{(e + 1) * b.bw - 1}:{e * b.bw}] = {convert_expr(src, el * a.bw, a, b)};")
    return out


def write_project(mods: list[Module], p: ConvPlan, out, name: str, cutoff: float, clock_period: float, part: str):
    """Write the segment projects and the frame-serial top (hwflow.rtl.fold.write_project with the window hooks)."""
    from functools import partial

    from . import fold

    top_fn = partial(fold.write_top, assemble=assemble, first_input=first_input(p) if mods[0].seg.window else None)
    return fold.write_project(mods, p, out, name, cutoff, clock_period, part, top_fn=top_fn)
