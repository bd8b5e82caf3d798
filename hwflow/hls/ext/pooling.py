"""hwflow's exact average pooling (``hwflow.nn.layers.QGlobalAveragePooling1D``) in hls4ml: the stock layer.

The Keras layer computes exactly what hls4ml's ``nnet::global_pooling1d_cl`` (Average) computes with the
accumulator and result types it carries (hwflow.reference.pooling), so the conversion needs no C++ of its
own: the Keras-2 handler parses it as a ``GlobalAveragePooling1D``, and hls.convert sets the hls4ml layer's
``accum`` and ``result`` precisions from the Keras layer. Not an op of the registry (no IR layer, header or
tracer of its own: the RTL route traces the stock layer).
"""

from __future__ import annotations

KERAS_CLASS = "QGlobalAveragePooling1D"


def parse_qglobal_average_pooling(keras_layer, input_names, input_shapes, data_reader):
    """Parse QGlobalAveragePooling1D with hls4ml's global pooling handler, as the stock layer it computes."""
    from hls4ml.converters.keras.pooling import parse_global_pooling_layer

    stock = {**keras_layer, "class_name": "GlobalAveragePooling1D"}
    return parse_global_pooling_layer(stock, input_names, input_shapes, data_reader)


def precision(layer) -> dict:
    """Return the hls4ml ``Precision`` entries of a QGlobalAveragePooling1D (empty for its float twin)."""
    if getattr(layer, "input_type", None) is None:
        return {}
    return {"accum": layer.accum_type, "result": layer.result_type}


def register() -> None:
    """Register the Keras-2 handler with hls4ml."""
    import hls4ml

    hls4ml.converters.register_keras_v2_layer_handler(KERAS_CLASS, parse_qglobal_average_pooling)
