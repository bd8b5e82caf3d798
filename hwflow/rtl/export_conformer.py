"""Neutral-file description of the conformer's layers (main venv side of hwflow.rtl.trace_conformer).

Ops added to the neutral format (see hwflow/rtl/export.py for the format):

- ``conv1d`` (stock hls4ml Conv1D, io_parallel Latency): attrs in_width, out_width, n_chan, n_filt, filt_width,
  stride, pad_left, pad_right; arrays weight (filt_width * n_chan, n_filt: tap-major rows, as hls4ml's im2col
  buffer), bias (n_filt,). Each output frame is a ``dense`` over its zero-padded window of frames.
- ``depthwise_conv1d`` (hwflow HwflowDepthwiseConv1D, batch norm folded): attrs in_width, out_width, n_chan,
  filt_width, pad_left; arrays weight (filt_width, n_chan), bias (n_chan,); types weight, bias, accum, result
  (hwflow.reference.conformer.depthwise_conv1d).
- ``swish`` / ``glu`` (HwflowSwish / HwflowGLU): attrs table_size, log2_size, log2_scale; array table (the
  sigmoid table values, already in table_t); types table, result (hwflow.reference.conformer.swish / glu).
"""

from __future__ import annotations

import numpy as np

OPS = ("conv1d", "depthwise_conv1d", "swish", "glu")  # neutral op names (the extension ops' registry names)


def describe(layer, op: str, attrs: dict, weights) -> dict:
    """Fill ``attrs`` of a conformer op and return its arrays; ``weights`` is export._weights (the C++ values)."""
    if op == "conv1d":
        w = weights(layer)
        k, c, f = (int(layer.get_attr(a)) for a in ("filt_width", "n_chan", "n_filt"))
        if int(layer.get_attr("dilation", 1) or 1) != 1:
            from ..util import HwflowError

            raise HwflowError(f"Conv1D layer '{layer.name}' is dilated: the RTL route handles dilation 1 only")
        attrs.update(
            in_width=int(layer.get_attr("in_width")),
            out_width=int(layer.get_attr("out_width")),
            n_chan=c,
            n_filt=f,
            filt_width=k,
            stride=int(layer.get_attr("stride_width")),
            pad_left=int(layer.get_attr("pad_left")),
            pad_right=int(layer.get_attr("pad_right")),
        )
        return {"weight": w["weight"].reshape(k * c, f), "bias": w.get("bias", np.zeros(f)).reshape(f)}
    if op == "depthwise_conv1d":
        if hasattr(layer, "resolve_accum"):
            layer.resolve_accum()  # 'auto' accumulator: the exact type the C++ was generated with
        w = weights(layer)
        k, c = int(layer.get_attr("filt_width")), int(layer.get_attr("n_chan"))
        attrs.update(
            in_width=int(layer.get_attr("in_width")),
            out_width=int(layer.get_attr("out_width")),
            n_chan=c,
            filt_width=k,
            pad_left=int(layer.get_attr("pad_left")),
        )
        return {"weight": w["weight"].reshape(k, c), "bias": w["bias"].reshape(c)}
    # swish / glu: the sigmoid table exactly as the generated config holds it
    from ..hls.ext.swish import table_of

    table = table_of(layer)
    attrs.update(table_size=table.table_size, log2_size=table.log2_size, log2_scale=table.log2_scale)
    return {"table": np.asarray(table.values(), dtype=np.float64)}
