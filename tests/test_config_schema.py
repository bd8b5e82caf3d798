"""Model-card schema: unknown keys named, wrong types, bad values, defaults, cross checks, the shipped card."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwflow.config import CardError, load_card, parse_overrides, validate

REPO = Path(__file__).resolve().parents[1]


def raw(**sections):
    base = {"name": "t", "data": {"kind": "jets"}, "model": {"kind": "transformer"}}
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return base


def test_defaults_filled():
    c = validate(raw())
    assert c["model"]["embed_dim"] == 16 and c["model"]["num_heads"] == 2 and c["model"]["key_dim"] == 8
    assert c["model"]["ffn_dim"] == 32 and c["model"]["num_blocks"] == 1
    assert c["data"]["jets"]["n_constituents"] == 16
    assert c["train"]["float_twin"] is True and c["train"]["patience"] > 0
    assert c["quant"]["enabled"] is True and c["quant"]["default"]["bits"] == 8
    assert c["hls"]["csim_samples"] == 1000


def test_unknown_key_is_named_with_allowed_keys():
    with pytest.raises(CardError, match=r"unknown key 'model\.embed_size'.*embed_dim"):
        validate(raw(model={"embed_size": 8}))
    with pytest.raises(CardError, match=r"unknown key 'trian'"):
        validate({**raw(), "trian": {}})
    with pytest.raises(CardError, match=r"unknown key 'quant\.qkv\.width'"):
        validate(raw(quant={"qkv": {"width": 8}}))


@pytest.mark.parametrize(
    "section,key,value,pattern",
    [
        ("model", "embed_dim", "16", r"model\.embed_dim.*expected int"),
        ("model", "num_heads", 2.0, r"model\.num_heads.*expected int"),
        ("model", "num_blocks", True, r"model\.num_blocks.*expected int"),  # bools are not ints in a card
        ("train", "learning_rate", "fast", r"train\.learning_rate.*expected int/float"),
        ("train", "float_twin", "yes", r"train\.float_twin.*expected bool"),
        ("hls", "reuse_factor", [1], r"hls\.reuse_factor.*expected int"),
    ],
)
def test_wrong_type(section, key, value, pattern):
    with pytest.raises(CardError, match=pattern):
        validate(raw(**{section: {key: value}}))


@pytest.mark.parametrize(
    "section,key,value,pattern",
    [
        ("model", "embed_dim", 0, r"model\.embed_dim.*> 0"),
        ("model", "pooling", "sum", r"model\.pooling.*one of 'mean', 'max', 'flatten'"),
        ("model", "norm", "batchnorm", r"model\.norm.*'layernorm', 'rmsnorm'"),
        ("model", "kind", "mlp", r"model\.kind.*'transformer', 'conformer'"),
        ("model", "dropout", 1.0, r"model\.dropout.*in \[0, 1\)"),
        ("train", "epochs", -1, r"train\.epochs.*> 0"),
        ("hls", "strategy", "latency", r"hls\.strategy.*'Latency', 'Resource'"),
    ],
)
def test_bad_value(section, key, value, pattern):
    with pytest.raises(CardError, match=pattern):
        validate(raw(**{section: {key: value}}))


def test_quant_roles_open_but_checked():
    c = validate(raw(quant={"qkv": {"bits": 10, "integer": 3}}))
    assert c["quant"]["qkv"] == {"bits": 10, "integer": 3, "keep_negative": True, "alpha": 1}
    with pytest.raises(CardError, match=r"quant\.qkv\.bits.*> 0"):
        validate(raw(quant={"qkv": {"bits": 0}}))
    with pytest.raises(CardError, match=r"quant\.softmax\.keep_negative.*bool"):
        validate(raw(quant={"softmax": {"keep_negative": "no"}}))


def test_missing_required():
    with pytest.raises(CardError, match=r"missing key 'model\.kind'"):
        validate({"name": "t", "data": {"kind": "jets"}, "model": {}})
    with pytest.raises(CardError, match=r"missing key 'name'"):
        validate({"data": {"kind": "jets"}, "model": {"kind": "transformer"}})


def test_cross_checks():
    with pytest.raises(CardError, match="pT window empty"):
        validate(raw(data={"kind": "jets", "jets": {"pt_min": 1000.0, "pt_max": 900.0}}))
    with pytest.raises(CardError, match="test_fraction \\+ data.val_fraction"):
        validate(raw(data={"kind": "jets", "test_fraction": 0.6, "val_fraction": 0.5}))
    with pytest.raises(CardError, match="conformer' expects data.kind 'kws'"):
        validate(raw(model={"kind": "conformer"}))
    with pytest.raises(CardError, match="duplicates"):
        validate(raw(data={"kind": "jets", "jets": {"classes": ["g", "g"]}}))


def test_shipped_jet_transformer_card(monkeypatch):
    monkeypatch.setenv("HWFLOW_ROOT", str(REPO))
    c = load_card("jet_transformer")
    assert c.name == "jet_transformer" and c["model"]["kind"] == "transformer"
    from hwflow.nn.transformer import ROLES

    # the card spells out every quantizer role the builder uses, so it is the whole story
    assert set(ROLES) <= set(c["quant"]) - {"enabled"}
    assert c.model_dir() == REPO / "models" / "jet_transformer"


def test_overrides_are_validated(monkeypatch):
    monkeypatch.setenv("HWFLOW_ROOT", str(REPO))
    c = load_card("jet_transformer", parse_overrides(["train.epochs=3", "model.pooling=max"]))
    assert c["train"]["epochs"] == 3 and c["model"]["pooling"] == "max"
    with pytest.raises(CardError, match=r"train\.epochs"):
        load_card("jet_transformer", parse_overrides(["train.epochs=zero"]))


def test_unknown_card_lists_known(monkeypatch):
    monkeypatch.setenv("HWFLOW_ROOT", str(REPO))
    with pytest.raises(CardError, match="jet_transformer"):
        load_card("no_such_model")


def test_base_card_is_merged_key_by_key(tmp_path, monkeypatch):
    import yaml

    monkeypatch.setenv("HWFLOW_ROOT", str(REPO))
    full = load_card("kws_conformer", parse_overrides(["model.attention=grouped", "model.attention_group=5"]))
    variant = load_card("kws_conformer_grouped")  # base: kws_conformer + its own model keys
    assert {k: v for k, v in variant.items() if k not in ("name", "description")} == {
        k: v for k, v in full.items() if k not in ("name", "description")
    }
    assert variant.name == "kws_conformer_grouped" and variant["quant"] == full["quant"]
    monkeypatch.setenv("HWFLOW_ROOT", str(tmp_path))
    (tmp_path / "models").mkdir()
    for name, base in (("a", "b"), ("b", "a"), ("c", "nope"), ("d", 3)):
        (tmp_path / "models" / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "base": base}))
    with pytest.raises(CardError, match=r"b.yaml: 'base' cards form a loop \(a -> b -> a\)"):
        load_card("a")
    with pytest.raises(CardError, match=r"model card 'nope' not found"):
        load_card("c")
    with pytest.raises(CardError, match=r"'base' must name another card"):
        load_card("d")
