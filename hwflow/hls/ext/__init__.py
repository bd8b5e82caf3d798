"""hls4ml extension layers of hwflow: one module per op.

Each module defines the IR layer (``hls4ml.model.layers.Layer`` subclass, with ``hwflow_spec()`` returning the
exact arithmetic it generates where the op has a spec), its Keras-2 handler, config/function templates, optimizer
passes and the conversion hooks (``configure``, ``calibration_probes``). Nothing here registers itself: the op's
record in hwflow/ops/catalog.py names these pieces and hwflow.hls.extensions registers them through hls4ml's
public extension API. The C++ lives in hwflow/hls/nnet_utils/hwflow_*.h; the numpy references in hwflow/reference/.
Recipe for a new op: docs/adding_an_op.md.
"""
