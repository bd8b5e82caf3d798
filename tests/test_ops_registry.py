"""The hwflow.ops registry is the only list of extension ops: every record is complete and every stage reads it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from hwflow import ops
from hwflow.ops import Op, all_ops, resolve


def test_every_op_has_every_piece():
    """Each record names an existing IR layer, templates, headers, numpy reference, handler/Keras layers or
    replaced stock classes, and only real objects (the RTL tracer is checked in the RTL environment)."""
    pytest.importorskip("hls4ml")
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
    from hls4ml.model.layers import Layer

    names = [o.name for o in all_ops()]
    assert {"softmax", "layernorm", "mha", "swish", "glu", "depthwise_conv1d"} <= set(names)
    assert len(names) == len(set(names))
    for o in all_ops():
        assert issubclass(resolve(o.ir_layer), Layer), o.name
        kinds = {type(resolve(t)()).__mro__[1] for t in o.templates}
        assert kinds == {LayerConfigTemplate, FunctionCallTemplate}, o.name
        assert o.headers and all(p.is_file() for p in o.header_paths()), o.name
        assert callable(resolve(o.reference)), o.name
        assert o.keras_layers or o.replaces, f"{o.name}: no Keras layer reaches it"
        if o.keras_layers:
            assert callable(resolve(o.handler)), o.name
            for k in o.keras_layers:
                assert resolve(k).__name__ == k.rsplit(":", 1)[1], k
        for p in o.passes:
            assert callable(resolve(p.cls)), p.name
        for hook in (o.configure, o.calibrate):
            if hook:
                assert callable(resolve(hook)), hook


def test_supported_list_is_derived_from_the_registry():
    """convert's supported list holds every Keras class of every op, and the error names them."""
    pytest.importorskip("hls4ml")
    from hwflow.hls.convert import supported_layers

    sup = set(supported_layers())
    assert set(ops.keras_classes()) <= sup
    assert {"QMultiHeadAttention", "QSwish", "QGLU", "QDepthwiseConv1D", "QRMSNormalization"} <= sup


def _dummy_op() -> Op:
    # a throw-away op built from softmax's pieces under new names: the stages must pick it up from its record
    return Op(
        name="dummy_scale",
        ir_layer="tests_dummy_op:HwflowDummy",
        keras_layers=("tests_dummy_op:QDummy",),
        handler="tests_dummy_op:parse_dummy",
        templates=("tests_dummy_op:HwflowDummyConfigTemplate", "tests_dummy_op:HwflowDummyFunctionTemplate"),
        headers=("hwflow_softmax.h",),
        reference="hwflow.reference.softmax:softmax",
        tracer="tests_dummy_op:trace_dummy",
    )


DUMMY_MODULE = """
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.layers import Layer


class QDummy:
    pass


class HwflowDummy(Layer):
    def initialize(self):
        self.add_output_variable(list(self.get_input_variable().shape))


class HwflowDummyConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(HwflowDummy)

    def format(self, node):
        return ""


class HwflowDummyFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(HwflowDummy, include_header=["nnet_utils/hwflow_softmax.h"])

    def format(self, node):
        return ""


def parse_dummy(keras_layer, input_names, input_shapes, data_reader):
    return {"class_name": "HwflowDummy", "name": keras_layer["config"]["name"], "inputs": input_names}, input_shapes[0]


def trace_dummy(x, layer, arrays, slice_bits):
    return x
"""


@pytest.fixture
def dummy_op(tmp_path, monkeypatch):
    (tmp_path / "tests_dummy_op.py").write_text(DUMMY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    op = ops.register_op(_dummy_op())
    yield op
    ops.unregister_op(op.name)


def test_dummy_op_reaches_every_stage(dummy_op):
    """A new record alone makes hls4ml parse and build its layer, convert list it, rtl export and trace use it."""
    pytest.importorskip("hls4ml")
    import hls4ml

    from hwflow.hls.convert import supported_layers
    from hwflow.hls.extensions import register_extensions
    from hwflow.rtl import export

    assert "dummy_scale" in register_extensions()
    assert "QDummy" in supported_layers()
    assert hls4ml.model.layers.layer_map["HwflowDummy"] is resolve(dummy_op.ir_layer)
    assert "QDummy" in hls4ml.converters.get_supported_keras_layers()
    assert export._ext_op("HwflowDummy") == "dummy_scale"


def test_fold_reads_token_wise_ops_from_the_registry(dummy_op):
    """The folded RTL path runs registered token-wise ops G tokens at a time, and only those."""
    from hwflow.rtl import fold

    assert {"softmax", "layernorm"} <= fold.token_ops() and "mha" not in fold.token_ops()
    assert "dummy_scale" not in fold.token_ops()
    ops.unregister_op(dummy_op.name)
    ops.register_op(dataclasses.replace(dummy_op, token_wise=True))
    assert "dummy_scale" in fold.token_ops()


RTL_PY = Path(os.environ.get("HWFLOW_RTL_PYTHON", Path(__file__).resolve().parents[1] / ".venv-rtl" / "bin" / "python"))


@pytest.mark.rtl
@pytest.mark.skipif(not RTL_PY.exists(), reason="RTL environment absent: run `make rtl-env`")
def test_rtl_dispatch_reads_the_registry(tmp_path):
    """In the RTL environment every registered tracer resolves, and trace_graph dispatches a new op to its tracer."""
    (tmp_path / "tests_dummy_op.py").write_text(
        "def trace_dummy(x, layer, arrays, slice_bits):\n    assert slice_bits == 7\n    return x * 2\n"
    )
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        from da4ml.trace import FixedVariableArrayInput, HWConfig
        from hwflow import ops
        from hwflow.rtl import trace_graph as T
        for o in ops.all_ops():
            if o.tracer:
                assert callable(ops.resolve(o.tracer)), o.tracer
        ops.register_op(ops.Op(name="dummy_scale", ir_layer="m:HwflowDummy", templates=(), headers=(),
                               reference="m:r", tracer="tests_dummy_op:trace_dummy"))
        x = FixedVariableArrayInput((3,), hwconf=HWConfig(1, -1, 5.0)).quantize(1, 3, 2)
        layer = {{"op": "dummy_scale", "hls_class": "HwflowDummy", "attrs": {{}}, "types": {{}}}}
        y = T.apply_layer(layer, [x], {{}}, (3,), 7)
        print("ok", y.shape)
    """)
    p = subprocess.run(
        [str(RTL_PY), "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    assert p.returncode == 0 and "ok (3,)" in p.stdout, p.stderr[-2000:]


def test_register_op_rejects_a_second_record_for_one_ir_class():
    with pytest.raises(ValueError, match="already belongs"):
        ops.register_op(Op(name="softmax2", ir_layer="x:HwflowSoftmax", templates=(), headers=(), reference="x:y"))


def test_extensions_use_only_public_hls4ml_api():
    """No hwflow module imports a private hls4ml name or replaces an hls4ml handler in place (the records go
    through register_keras_v2_layer_handler, register_layer, register_template/source/pass)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "hwflow"
    offences = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hls4ml"):
                offences += [f"{path.name}: imports {a.name}" for a in node.names if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id == "hls4ml":
                    offences.append(f"{path.name}: uses hls4ml...{node.attr}")
            if isinstance(node, ast.Name) and node.id == "get_layer_handlers":
                offences.append(f"{path.name}: reads hls4ml's handler table (use register_keras_v2_layer_handler)")
    assert not offences, offences
