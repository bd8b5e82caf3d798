"""The built-in extension ops of hwflow: one ``register_op`` record each (docs/adding_an_op.md adds one more)."""

from __future__ import annotations

from . import Op, Pass, register_op

register_op(
    Op(
        name="softmax",
        doc="max-subtracted softmax over the last axis, exp/reciprocal tables (replaces every stock Softmax)",
        ir_layer="hwflow.hls.ext.softmax:HwflowSoftmax",
        templates=(
            "hwflow.hls.ext.softmax:HwflowSoftmaxConfigTemplate",
            "hwflow.hls.ext.softmax:HwflowSoftmaxFunctionTemplate",
        ),
        headers=("hwflow_softmax.h",),
        reference="hwflow.reference.softmax:softmax",
        tracer="hwflow.rtl.trace_graph:op_softmax",
        # the exact classifier softmax of hwflow's models (issue 11); stock softmaxes reach it through `replaces`
        keras_layers=("hwflow.nn.layers:QSoftmax",),
        handler="hwflow.hls.ext.softmax:parse_qsoftmax_layer",
        passes=(Pass("hwflow_replace_softmax", "hwflow.hls.ext.softmax:HwflowReplaceSoftmax", "convert"),),
        replaces=("Softmax",),
        configure="hwflow.hls.ext.softmax:configure",
        calibrate="hwflow.hls.ext.softmax:calibration_probes",
        token_wise=True,
        multiplies_variables=True,
    )
)

register_op(
    Op(
        name="layernorm",
        doc="LayerNorm (center) / RMSNorm over the last axis, 1/sqrt table per octave (replaces stock LayerNorm)",
        ir_layer="hwflow.hls.ext.norm:HwflowNorm",
        keras_layers=("hwflow.nn.layers:QLayerNormalization", "hwflow.nn.layers:QRMSNormalization"),
        handler="hwflow.hls.ext.norm:parse_qnorm_layer",
        templates=("hwflow.hls.ext.norm:HwflowNormConfigTemplate", "hwflow.hls.ext.norm:HwflowNormFunctionTemplate"),
        headers=("hwflow_layernorm.h",),
        reference="hwflow.reference.layernorm:norm",
        tracer="hwflow.rtl.trace_graph:op_layernorm",
        passes=(Pass("hwflow_replace_layernorm", "hwflow.hls.ext.norm:HwflowReplaceLayerNorm", "convert"),),
        replaces=("LayerNormalization",),
        configure="hwflow.hls.ext.norm:configure",
        token_wise=True,
        multiplies_variables=True,
    )
)

register_op(
    Op(
        name="mha",
        doc="quantized multi-head self-attention (projections, scaled scores, softmax, context, output)",
        ir_layer="hwflow.hls.ext.mha:HwflowMultiHeadAttention",
        # grouped attention (Burchi & Vielzeuf 2021) is this kernel with config group > 1
        keras_layers=("hwflow.nn.layers:QMultiHeadAttention", "hwflow.nn.layers:QGroupedAttention"),
        handler="hwflow.hls.ext.mha:parse_qmha_layer",
        templates=("hwflow.hls.ext.mha:HwflowMHAConfigTemplate", "hwflow.hls.ext.mha:HwflowMHAFunctionTemplate"),
        headers=("hwflow_mha.h", "hwflow_attention.h"),
        reference="hwflow.reference.attention:mha",
        tracer="hwflow.rtl.trace_graph:op_mha",
        passes=(
            Pass("hwflow_mha_resource_layout", "hwflow.hls.ext.mha:HwflowMHAResourceLayout", "vivado:specific_types"),
        ),
        configure="hwflow.hls.ext.mha:configure",
        calibrate="hwflow.hls.ext.mha:calibration_probes",
        multiplies_variables=True,
    )
)

# attention variants (issue 13): the MHA record's configure/calibrate hooks cover their Keras classes too
# (hwflow.hls.ext.mha.ATTENTION_CLASSES), its Resource-layout pass matches them (subclasses of its IR layer)
register_op(
    Op(
        name="linformer",
        doc="Linformer self-attention: keys/values compressed along the sequence N -> k by learned E, F (Wang 2020)",
        ir_layer="hwflow.hls.ext.linformer:HwflowLinformer",
        keras_layers=("hwflow.nn.layers:QLinformerAttention",),
        handler="hwflow.hls.ext.linformer:parse_linformer_layer",
        templates=(
            "hwflow.hls.ext.linformer:HwflowLinformerConfigTemplate",
            "hwflow.hls.ext.linformer:HwflowLinformerFunctionTemplate",
        ),
        headers=("hwflow_linformer.h", "hwflow_attention.h", "hwflow_softmax.h"),
        reference="hwflow.reference.linformer:linformer",
        tracer="hwflow.rtl.trace_graph:op_attention",
        multiplies_variables=True,
    )
)

register_op(
    Op(
        name="cosformer",
        doc="cosFormer linear attention: ReLU features, cos re-weighting table, Q'(K'^T V), one reciprocal per query",
        ir_layer="hwflow.hls.ext.cosformer:HwflowCosformer",
        keras_layers=("hwflow.nn.layers:QCosformerAttention",),
        handler="hwflow.hls.ext.cosformer:parse_cosformer_layer",
        templates=(
            "hwflow.hls.ext.cosformer:HwflowCosformerConfigTemplate",
            "hwflow.hls.ext.cosformer:HwflowCosformerFunctionTemplate",
        ),
        headers=("hwflow_cosformer.h", "hwflow_attention.h"),
        reference="hwflow.reference.cosformer:cosformer",
        tracer="hwflow.rtl.trace_graph:op_attention",
        multiplies_variables=True,
    )
)

register_op(
    Op(
        name="swish",
        doc="swish/SiLU x * sigmoid(x) with a sigmoid look-up table (QSwish and Activation('swish'|'silu'))",
        ir_layer="hwflow.hls.ext.swish:HwflowSwish",
        keras_layers=("hwflow.nn.conformer:QSwish",),
        handler="hwflow.hls.ext.swish:parse_qswish",
        templates=(
            "hwflow.hls.ext.swish:HwflowSwishConfigTemplate",
            "hwflow.hls.ext.swish:HwflowSwishFunctionTemplate",
        ),
        headers=("hwflow_swish.h",),
        reference="hwflow.reference.conformer:swish",
        tracer="hwflow.rtl.trace_conformer:op_swish",
        multiplies_variables=True,
        token_wise=True,
        passes=(Pass("hwflow_replace_swish", "hwflow.hls.ext.swish:HwflowReplaceSwishActivation", "convert"),),
        replaces=("Activation",),
    )
)

register_op(
    Op(
        name="glu",
        doc="gated linear unit a * sigmoid(b) over the channel axis (QGLU), the swish sigmoid table",
        ir_layer="hwflow.hls.ext.glu:HwflowGLU",
        keras_layers=("hwflow.nn.conformer:QGLU",),
        handler="hwflow.hls.ext.glu:parse_qglu",
        templates=("hwflow.hls.ext.glu:HwflowGLUConfigTemplate", "hwflow.hls.ext.glu:HwflowGLUFunctionTemplate"),
        headers=("hwflow_glu.h", "hwflow_swish.h"),
        reference="hwflow.reference.conformer:glu",
        tracer="hwflow.rtl.trace_conformer:op_glu",
        multiplies_variables=True,
        token_wise=True,
    )
)

register_op(
    Op(
        name="depthwise_conv1d",
        doc="depthwise 1-D convolution, stride 1, batch norm folded in (QDepthwiseConv1D), Latency and Resource",
        ir_layer="hwflow.hls.ext.depthwise1d:HwflowDepthwiseConv1D",
        keras_layers=("hwflow.nn.conformer:QDepthwiseConv1D",),
        handler="hwflow.hls.ext.depthwise1d:parse_qdepthwise_conv1d",
        templates=(
            "hwflow.hls.ext.depthwise1d:HwflowDepthwiseConv1DConfigTemplate",
            "hwflow.hls.ext.depthwise1d:HwflowDepthwiseConv1DFunctionTemplate",
        ),
        headers=("hwflow_depthwise1d.h",),
        reference="hwflow.reference.conformer:depthwise_conv1d",
        # kernel 1 (feature norm) maps each frame on its own; wider kernels read frame windows (hwflow.rtl.fold_conv)
        tracer="hwflow.rtl.trace_conformer:op_depthwise1d",
    )
)
