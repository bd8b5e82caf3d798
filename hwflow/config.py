"""Model cards: load a YAML card from models/, validate every key against the schema, fill defaults.

A card is the whole experiment in one file: data settings, architecture, QKeras quantizers,
training settings, the hls4ml configuration and the synthesis settings. Unknown or ill-typed keys
are rejected with the key's dotted name and what is allowed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .util import HwflowError, project_root, stable_hash


class CardError(HwflowError):
    """A model card is wrong: the message names the key and what is allowed."""


@dataclass
class F:
    """One scalar/list field of the schema."""

    types: tuple
    default: Any = None
    required: bool = False
    choices: tuple | None = None
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # human text of the check
    item_types: tuple | None = None  # for lists
    item_choices: tuple | None = None

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        names = "/".join(t.__name__ for t in self.types)
        if self.item_types:
            names += " of " + "/".join(t.__name__ for t in self.item_types)
        return names + (f" ({self.rule})" if self.rule else "")


@dataclass
class S:
    """A section (mapping) with known keys; ``open_values`` allows arbitrary keys whose values match ``F``."""

    fields: dict = field(default_factory=dict)
    open_values: F | S | None = None


def _pos(x):
    return x > 0


def _nonneg(x):
    return x >= 0


def _frac(x):
    return 0 <= x < 1


NUM = (int, float)

# A quantizer as written in a card: {bits, integer, keep_negative?, alpha?} -> QKeras quantized_bits / quantized_relu
QUANT = S(
    {
        "bits": F((int,), 8, check=_pos, rule="> 0"),
        "integer": F((int,), 0, check=_nonneg, rule=">= 0"),
        "keep_negative": F((bool,), True),
        "alpha": F((int, float, str), 1),
    }
)

JET_FEATURES = (
    "ptrel",
    "deta",
    "dphi",
    "logpt",
    "dr",
    "logptrel",
    "e_rel",
    "pt",
    "eta",
    "phi",
    "e",
    "loge",
    "etarel",
    "charge",
    "is_electron",
    "is_muon",
    "is_photon",
    "is_charged_hadron",
    "is_neutral_hadron",
)

JETS = S(
    {
        "classes": F((list,), ["g", "q", "W", "Z", "t"], item_types=(str,), item_choices=("g", "q", "W", "Z", "t")),
        "n_constituents": F((int,), 16, check=_pos, rule="> 0 and <= n_max"),
        # constituents kept per jet in the cache (hardest first): N and the features are picked at load time
        # from them, so a card changes n_constituents/features without regenerating (up to n_max)
        "n_max": F((int,), 128, check=_pos, rule="> 0"),
        "jets_per_class": F((int,), 1000, check=_pos, rule="> 0"),
        "pt_min": F(NUM, 800.0, check=_pos, rule="> 0 GeV"),
        "pt_max": F(NUM, 1200.0, check=_pos, rule="> pt_min, GeV"),
        "sqrt_s": F(NUM, 13000.0, check=_pos, rule="> 0 GeV"),
        "jet_r": F(NUM, 0.8, check=_pos, rule="> 0"),
        "match_dr": F(NUM, 0.6, check=_pos, rule="> 0"),
        # the hls4ml LHC jet dataset's constituent features (meanings in hwflow/data/physics.py; deta is the
        # rapidity difference, FastJet's metric, etarel the pseudorapidity one); same list as physics.FEATURES
        "features": F(
            (list,),
            ["ptrel", "deta", "dphi", "logpt"],
            item_types=(str,),
            item_choices=JET_FEATURES,
        ),
        "shard_size": F((int,), 250, check=_pos, rule="> 0"),
        "pthat_margin": F(
            NUM, 0.1, check=lambda x: 0 <= x < 1, rule="in [0, 1): pT-hat window = [pt_min(1-m), pt_max(1+m)]"
        ),
        "y_max": F(NUM, 2.5, check=_pos, rule="> 0 (|rapidity| of the jet)"),
        "contained": F((bool,), True),  # W/Z/t: decay quarks within jet_r of the jet axis
        "sd_zcut": F(NUM, 0.1, check=lambda x: 0 < x < 0.5, rule="in (0, 0.5)"),
        "sd_beta": F(NUM, 0.0, check=_nonneg, rule=">= 0"),
    }
)

# Spoken keywords from espeak-ng (hwflow/data/kws.py): one group per voice x variant, so test voices are unseen
KWS = S(
    {
        "keywords": F(
            (list,),
            ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"],
            item_types=(str,),
            rule="quote yes/no/on/off: YAML reads them as booleans",
        ),
        "unknown_class": F((bool,), True),
        "unknown_words": F(
            (list,),
            [
                "bed",
                "bird",
                "cat",
                "dog",
                "happy",
                "house",
                "tree",
                "wow",
                "zero",
                "one",
                "two",
                "three",
                "four",
                "five",
                "six",
                "seven",
                "eight",
                "nine",
                "learn",
                "follow",
                "forward",
                "back",
                "car",
                "red",
                "green",
                "blue",
                "water",
                "light",
                "music",
                "open",
                "close",
                "start",
                "play",
                "pause",
                "next",
                "hello",
                "good",
                "time",
                "day",
                "cup",
                "map",
                "jet",
                "data",
                "yellow",
                "dot",
                "note",
                "ship",
                "stone",
            ],
            item_types=(str,),
        ),
        "silence_class": F((bool,), True),
        "clips_per_class": F((int,), 200, check=_pos, rule="> 0"),
        "sample_rate": F((int,), 16000, check=_pos, rule="> 0 Hz"),
        "clip_ms": F(NUM, 1000.0, check=_pos, rule="> 0 ms (window the word is placed in)"),
        "n_mels": F((int,), 40, check=_pos, rule="> 0"),
        "n_frames": F((int,), 49, check=_pos, rule="= 1 + (clip_ms - win_ms) // hop_ms"),
        "win_ms": F(NUM, 30.0, check=_pos, rule="> 0"),
        "hop_ms": F(NUM, 20.0, check=_pos, rule="> 0"),
        "fmin_hz": F(NUM, 20.0, check=_nonneg, rule=">= 0 Hz"),
        "fmax_hz": F(NUM, 7600.0, check=_pos, rule="> fmin_hz, <= sample_rate / 2"),
        # base espeak-ng voices (no '+'); variants are espeak-ng voice variants ('' = the voice's own)
        "voices": F(
            (list,),
            [
                "en-us",
                "en-gb",
                "en-gb-x-rp",
                "en-gb-scotland",
                "en-gb-x-gbclan",
                "en-gb-x-gbcwmd",
                "en-029",
                "en-us-nyc",
            ],
            item_types=(str,),
        ),
        "variants": F(
            (list,), ["", "m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "klatt", "whisper"], item_types=(str,)
        ),
        # what the test/val splits hold out whole: each voice x variant, or each base voice (harder)
        "holdout": F((str,), "variant", choices=("variant", "voice")),
        "snr_db": F((list,), [0.0, 20.0], item_types=NUM),
        "speed": F((list,), [130, 210], item_types=NUM),
        "pitch": F((list,), [25, 75], item_types=NUM),
        "gain_db": F((list,), [-20.0, 0.0], item_types=NUM),
        "reverb_prob": F(NUM, 0.5, check=lambda x: 0 <= x <= 1, rule="in [0, 1]"),
        "rt60_s": F((list,), [0.1, 0.5], item_types=NUM),
        "noise_colors": F(
            (list,), ["white", "pink", "brown"], item_types=(str,), item_choices=("white", "pink", "brown")
        ),
        # clips per fresh worker process; the arrays do not depend on it (each clip is seeded by its index)
        "shard_size": F((int,), 200, check=_pos, rule="> 0"),
    }
)

SCHEMA = S(
    {
        "name": F((str,), required=True),
        "description": F((str,), ""),
        "data": S(
            {
                "kind": F((str,), required=True, choices=("jets", "kws")),
                "seed": F((int,), 42, check=_nonneg, rule=">= 0"),
                "test_fraction": F(NUM, 0.2, check=_frac, rule="in [0, 1)"),
                "val_fraction": F(NUM, 0.1, check=_frac, rule="in [0, 1)"),
                "jets": JETS,
                "kws": KWS,
            }
        ),
        "model": S(
            {
                "kind": F((str,), required=True, choices=("transformer", "conformer")),
                "embed_dim": F((int,), 16, check=_pos, rule="> 0"),
                "num_blocks": F((int,), 1, check=_pos, rule="> 0"),
                "num_heads": F((int,), 2, check=_pos, rule="> 0"),
                "key_dim": F((int,), 8, check=_pos, rule="> 0"),
                "ffn_dim": F((int,), 32, check=_pos, rule="> 0"),
                "pooling": F((str,), "mean", choices=("mean", "max", "flatten", "cls")),
                "norm": F((str,), "layernorm", choices=("layernorm", "rmsnorm")),
                "norm_position": F((str,), "post", choices=("pre", "post")),
                "activation": F((str,), "relu", choices=("relu", "swish", "gelu")),
                "conv_kernel": F((int,), 7, check=_pos, rule="> 0 (conformer depthwise kernel)"),
                "subsampling": F((int,), 2, check=_pos, rule="> 0 (conformer front-end stride)"),
                "fold_batchnorm": F((bool,), True),  # conformer: BN folded into the depthwise conv (exact)
                "swish_table_size": F(
                    (int,),
                    1024,
                    check=lambda v: v >= 2 and (v & (v - 1)) == 0,
                    rule="a power of two >= 2 (swish/GLU sigmoid table entries)",
                ),
                "swish_table_range": F(
                    NUM,
                    8.0,
                    check=lambda v: v > 0 and float(v).hex().startswith(("0x1.0000000000000p", "0x1p")),
                    rule="a power of two (sigmoid table covers [-range, range))",
                ),
                "swish_table_t": F((str,), "ap_ufixed<12,1,AP_RND,AP_SAT>"),
                "dropout": F(NUM, 0.0, check=_frac, rule="in [0, 1)"),
                # attention kind (issue 13, hwflow.nn.attention): softmax (MHA), linformer (keys/values compressed
                # N -> linformer_k), cosformer (ReLU features, cos re-weighting, linear form), grouped (tokens grouped
                # by attention_group before attention, ungrouped after)
                "attention": F((str,), "softmax", choices=("softmax", "linformer", "cosformer", "grouped")),
                "linformer_k": F((int,), 4, check=_pos, rule="> 0 (compressed sequence length)"),
                "attention_group": F((int,), 2, check=_pos, rule="> 0 (tokens per group; divides the sequence)"),
                "cosformer_m": F(
                    (int,), 0, check=_nonneg, rule=">= 0 (cos re-weighting horizon M; 0 = sequence length)"
                ),
                # transformer: fixed per-feature standardization (mean/std of the training set) as the first layer
                "input_norm": F((str,), "standard", choices=("standard", "none")),
            }
        ),
        # per-role quantizers; any layer-role name may be added (open), each a QUANT mapping
        "quant": S(
            {
                "enabled": F((bool,), True),
                "default": QUANT,
            },
            open_values=QUANT,
        ),
        "train": S(
            {
                "epochs": F((int,), 30, check=_pos, rule="> 0"),
                "batch_size": F((int,), 128, check=_pos, rule="> 0"),
                "learning_rate": F(NUM, 2e-3, check=_pos, rule="> 0"),
                "patience": F((int,), 8, check=_pos, rule="> 0"),
                "seed": F((int,), 1, check=_nonneg, rule=">= 0"),
                "float_twin": F((bool,), True),
                # halve the learning rate when the validation loss stalls for patience/2 epochs (helps QAT settle)
                "reduce_lr": F((bool,), True),
                # start from another trained model's weights (models/<name>/qkeras.h5 or float.h5): layers of the
                # same name and shape are copied, the rest keep their seeded initialization (exploration trials)
                "warm_start": F((str,), None),
            }
        ),
        "hls": S(
            {
                "backend": F((str,), "Vitis", choices=("Vitis", "Vivado")),
                "io_type": F((str,), "io_parallel", choices=("io_parallel",)),
                "strategy": F((str,), "Latency", choices=("Latency", "Resource")),
                "reuse_factor": F((int,), 1, check=_pos, rule="> 0"),
                "part": F((str,), "xcvu13p-flga2577-2-e"),
                "clock_period": F(NUM, 5.0, check=_pos, rule="> 0 ns"),
                "default_precision": F((str,), "ap_fixed<16,6>"),
                "softmax": S(
                    {
                        "table_size": F((int,), 1024, check=_pos, rule="> 0 (power of two: coarse exp table entries)"),
                        "inv_table_size": F(
                            (int,), 1024, check=_pos, rule="> 0 (power of two: reciprocal table entries)"
                        ),
                        "exp_table_t": F((str,), None),
                        "inv_table_t": F((str,), None),
                    }
                ),
                # hls4ml-style overrides: {LayerName: {layer: {Precision: ..., ReuseFactor: ...}}}
                "layer_name": S({}, open_values=F((dict,), {})),
                "csim_samples": F((int,), 1000, check=_pos, rule="> 0"),
                # training rows (seeded, class-balanced: hwflow.data.pick_rows) sizing softmax/attention ranges
                "calibration_samples": F((int,), 2000, check=_pos, rule="> 0"),
            }
        ),
        "synth": S(
            {
                "csynth": F((bool,), True),
                "cosim": F((bool,), False),
                "vsynth": F((bool,), False),
                "export": F((bool,), False),
                "timeout_s": F((int,), 6 * 3600, check=_pos, rule="> 0 s"),
            }
        ),
        # where distributed work runs (hwflow.cluster): data shards and exploration trials, one Dask task each
        "dask": S(
            {
                # address of a running Dask scheduler (tcp://host:8786); empty: a LocalCluster on this machine.
                # --scheduler and $HWFLOW_DASK_SCHEDULER override it
                "scheduler": F((str,), None),
                "n_workers": F((int,), None, check=_pos, rule="> 0 LocalCluster processes (default: one per core)"),
                "threads_per_worker": F((int,), 1, check=_pos, rule="> 0"),
                "memory_limit": F((str,), "auto"),
                "retries": F((int,), 2, check=_nonneg, rule=">= 0 resubmissions of a task whose worker died"),
                # dask-jobqueue cluster instead of a LocalCluster: {kind: slurm|pbs|htcondor, jobs: N, cores, memory,
                # walltime, queue, account, job_extra_directives, ...}: the keys of dask_jobqueue's cluster classes
                "jobqueue": S({}, open_values=F((str, int, float, list, bool), None)),
            }
        ),
        "rtl": S(
            {
                "clock_period": F(NUM, 5.0, check=_pos, rule="> 0 ns"),
                # da4ml delay units per pipeline stage (~ adder levels; must exceed the widest var x var product)
                "latency_cutoff": F(NUM, 5.0, check=_pos, rule="> 0 adder levels per pipeline stage"),
                # variable x variable products (attention, softmax, norm) are built from slices of at most this many
                # bits, each one da4ml operation that must fit a stage: the cutoff is raised to it. 18 = one DSP48
                # operand; 9 halves the stage depth (ECP5 proxy of the jet tail: 20.9 -> 38.0 MHz) for ~4x the products
                "product_slice_bits": F((int,), 18, check=lambda v: 2 <= v <= 64, rule="2..64 bits"),
                "yosys": F((bool,), True),
                "yosys_timeout_s": F((int,), 3600, check=_pos, rule="> 0 s"),
                # skip Yosys (with a note) when da4ml estimates more LUTs than this, unless `hwflow rtl --yosys`
                "yosys_max_cost": F((int,), 300000, check=_pos, rule="> 0 estimated LUTs"),
                # skip Verilator/Icarus above this da4ml LUT estimate (their builds take hours) unless `--simulate`
                "sim_max_cost": F((int,), 500000, check=_pos, rule="> 0 estimated LUTs"),
                "samples": F((int,), 1000, check=_pos, rule="> 0"),
                "iverilog_samples": F((int,), 64, check=_nonneg, rule=">= 0 (0 skips the Icarus cross-check)"),
                # place and route designs (folded: each segment) up to this da4ml LUT estimate on a Lattice ECP5 with
                # nextpnr for a post-route Fmax proxy (runs with Yosys; ~3 min per 15 k estimated LUTs on 2 cores)
                "ecp5": F((bool,), True),
                "ecp5_max_cost": F((int,), 15000, check=_pos, rule="> 0 estimated LUTs"),
                # fold attention models over the sequence (hwflow.rtl.fold): G tokens per clock, one sample every
                # seq_len / G clocks; 0 = the whole sequence in parallel (II = 1, largest design)
                "tokens_per_cycle": F(
                    (int,), 0, check=_nonneg, rule=">= 0 (0: all tokens per clock; G must divide the sequence length)"
                ),
                # serial engine (hwflow.rtl.serial): the whole model as a micro-op program on this many
                # multiply-accumulate lanes, weights in ROM, activations in RAM; 0 = the parallel/folded designs
                "macs_per_cycle": F(
                    (int,), 0, check=lambda v: v in (0, 1), rule="0 (parallel/folded designs) or 1 (serial engine)"
                ),
            }
        ),
    }
)


def _type_ok(value: Any, types: tuple) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int in Python; not in a card
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, types)


def _validate(node: S, data: Any, where: str) -> dict:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CardError(f"{where or 'card'}: expected a mapping, got {type(data).__name__}")
    out: dict = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else str(key)
        spec = node.fields.get(key, node.open_values)
        if spec is None:
            allowed = ", ".join(sorted(node.fields)) or "(none)"
            raise CardError(f"unknown key '{dotted}': allowed keys here are {allowed}")
        if isinstance(spec, S):
            out[key] = _validate(spec, value, dotted)
        else:
            out[key] = _check_field(spec, value, dotted)
    for key, spec in node.fields.items():
        if key in out:
            continue
        dotted = f"{where}.{key}" if where else key
        if isinstance(spec, S):
            out[key] = _validate(spec, {}, dotted)
        elif spec.required:
            raise CardError(f"missing key '{dotted}': expected {spec.describe()}")
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def _check_field(spec: F, value: Any, dotted: str) -> Any:
    if value is None and not spec.required and spec.default is None:
        return None
    if not _type_ok(value, spec.types):
        raise CardError(f"key '{dotted}' = {value!r}: expected {spec.describe()}")
    if spec.choices and value not in spec.choices:
        raise CardError(f"key '{dotted}' = {value!r}: expected {spec.describe()}")
    if spec.check and not spec.check(value):
        raise CardError(f"key '{dotted}' = {value!r}: must be {spec.rule}")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if spec.item_types and not _type_ok(item, spec.item_types):
                raise CardError(f"key '{dotted}[{i}]' = {item!r}: expected {spec.describe()}")
            if spec.item_choices and item not in spec.item_choices:
                allowed = ", ".join(map(str, spec.item_choices))
                raise CardError(f"key '{dotted}[{i}]' = {item!r}: allowed values are {allowed}")
    return value


def _cross_checks(card: dict) -> None:
    j = card["data"]["jets"]
    if j["pt_max"] <= j["pt_min"]:
        raise CardError(
            f"data.jets: pT window empty (pt_min={j['pt_min']} >= pt_max={j['pt_max']}): set pt_max above pt_min"
        )
    if not j["classes"]:
        raise CardError("data.jets.classes is empty: list at least one of g, q, W, Z, t")
    if len(set(j["classes"])) != len(j["classes"]):
        raise CardError(f"data.jets.classes has duplicates: {j['classes']}")
    if not j["features"]:
        raise CardError("data.jets.features is empty: list at least one feature")
    if card["data"]["test_fraction"] + card["data"]["val_fraction"] >= 1:
        raise CardError("data.test_fraction + data.val_fraction must be < 1")
    m = card["model"]
    if m["kind"] == "conformer" and card["data"]["kind"] != "kws":
        raise CardError("model.kind 'conformer' expects data.kind 'kws'")
    for lo_hi in ("snr_db", "speed", "pitch", "gain_db", "rt60_s"):
        v = card["data"]["kws"][lo_hi]
        if len(v) != 2 or v[0] > v[1]:
            raise CardError(f"data.kws.{lo_hi} must be [low, high] with low <= high, got {v}")


class Card(dict):
    """A validated model card (a dict) with its source path."""

    @property
    def name(self) -> str:
        """Return the card's model name."""
        return self["name"]

    path: Path | None = None
    trained_as: str | None = None  # a sweep variant reuses its base card's trained model

    def data_spec(self) -> dict:
        """Return the dataset-defining subset of the card (kind-specific section + seed + splits)."""
        d = self["data"]
        return {"kind": d["kind"], "seed": d["seed"], **d[d["kind"]]}

    def data_hash(self) -> str:
        """Return the short hash of the data spec (the dataset cache key)."""
        return stable_hash(self.data_spec())

    def model_dir(self) -> Path:
        """Return models/<name>/, where trained models and their summary go."""
        return project_root() / "models" / (self.trained_as or self.name)

    def firmware_dir(self) -> Path:
        """Return firmware/<name>/, the generated HLS project."""
        return project_root() / "firmware" / self.name

    def report_dir(self) -> Path:
        """Return reports/<name>/."""
        return project_root() / "reports" / self.name


def validate(raw: dict) -> Card:
    """Return a validated Card (defaults filled) from a raw mapping, or raise CardError."""
    card = Card(_validate(SCHEMA, raw, ""))
    _cross_checks(card)
    return card


def find_card(name_or_path: str | Path) -> Path:
    """Return the YAML path for a model name (models/<name>.yaml) or an explicit path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    cand = project_root() / "models" / f"{name_or_path}.yaml"
    if cand.exists():
        return cand
    # models/<m>.explore.yaml are exploration spaces (hwflow.explore), not cards
    known = sorted(q.stem for q in (project_root() / "models").glob("*.yaml") if not q.stem.endswith(".explore"))
    raise CardError(
        f"model card '{name_or_path}' not found: expected models/{name_or_path}.yaml; known: "
        f"{', '.join(known) or 'none'}"
    )


def load_card(name_or_path: str | Path, overrides: dict | None = None) -> Card:
    """Return the validated Card for a model name or YAML path, with optional nested overrides."""
    path = find_card(name_or_path)
    raw = _read_card(path, ())
    if overrides:
        raw = _merge(raw or {}, overrides)
    try:
        card = validate(raw)
    except CardError as e:
        raise CardError(f"{path.name}: {e}") from None
    card.path = path
    return card


def _read_card(path: Path, seen: tuple) -> dict:
    """Return a card file's content; a card with ``base: <card>`` is that card's content with its own keys merged
    over it (nested sections key by key), so a variant card states only what differs."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise CardError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str) or not base:
        raise CardError(f"{path.name}: 'base' must name another card (models/<name>.yaml), got {base!r}")
    base_path = find_card(base)
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        chain = " -> ".join(q.stem for q in (*seen, path.resolve(), base_path.resolve()))
        raise CardError(f"{path.name}: 'base' cards form a loop ({chain}): make one of them a full card")
    return _merge(_read_card(base_path, (*seen, path.resolve())), raw)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def set_dotted(out: dict, key: str, value: Any) -> dict:
    """Set ``out[a][b][c] = value`` for key "a.b.c" (creating the inner dicts); return out."""
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """Return a nested override dict from ``key.sub=value`` strings (values parsed as YAML scalars)."""
    import yaml

    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise CardError(f"override '{item}' is not key=value (e.g. hls.reuse_factor=4)")
        key, value = item.split("=", 1)
        set_dotted(out, key, yaml.safe_load(value))
    return out


def schema_default(dotted: str) -> Any:
    """Return the schema default of a card key (e.g. ``"model.swish_table_size"``): the one place it is defined."""
    node: Any = SCHEMA
    for part in dotted.split("."):
        if not isinstance(node, S) or part not in node.fields:
            raise KeyError(f"no card key '{dotted}'")
        node = node.fields[part]
    if not isinstance(node, F):
        raise KeyError(f"card key '{dotted}' is a section, not a value")
    return copy.deepcopy(node.default)


def sigmoid_table_defaults() -> dict:
    """Return the default swish/GLU sigmoid table {table_size, table_range, table_t} (card ``model.swish_table_*``)."""
    return {k: schema_default(f"model.swish_{k}") for k in ("table_size", "table_range", "table_t")}


def schema_defaults(section: str) -> dict:
    """Return {key: default} of the scalar keys of a card section (e.g. ``"rtl"``), from the schema."""
    node: Any = SCHEMA
    for part in section.split("."):
        node = node.fields[part]
    return {k: copy.deepcopy(f.default) for k, f in node.fields.items() if isinstance(f, F)}
