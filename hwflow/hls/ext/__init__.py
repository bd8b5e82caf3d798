"""hls4ml extension layers of hwflow: one module per layer.

Each module defines the IR layer (``hls4ml.model.layers.Layer`` subclass with ``hwflow_spec()`` returning the
exact arithmetic it generates), its Keras-2 handler, config/function templates, optimizer passes, and a
``register(backends)`` that registers all of it through hls4ml's public extension API
(register_keras_v2_layer_handler, register_layer, backend.register_template/register_source/register_pass).
The C++ lives in hwflow/hls/nnet_utils/hwflow_*.h; the numpy references in hwflow/reference/.
Add a module to hwflow/hls/extensions.py:EXTENSIONS to have it registered.
"""
