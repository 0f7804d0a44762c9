"""The int8 ONNX serving path: the shipped encoder export, ONNX heads, the embedding LRU, and how
the Moderator chooses between ONNX and PyTorch."""

from __future__ import annotations

import collections
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from bastion.detectors.text_model import shipped_model_dir
from bastion.errors import ModelError
from bastion.models.artifact import HEAD_ONNX, ModelArtifact
from bastion.models.encoder import SHIPPED_ONNX_ENCODER, load_encoder
from bastion.models.onnx_runtime import LruEmbeddings, OnnxHead, OnnxTextEncoder, token_batches
from bastion.models.parts import file_sha256
from bastion.moderator import Moderator
from subprocesses import python_prints

TEXTS = [
    "I will find you after school and you will regret it",
    "lovely sunset over the harbour tonight",
    "ok",
    "Here is a much longer post about the city council meeting, the new bus routes, the "
    "parking changes near the market and what neighbours said about all of it afterwards.",
    "you people are vermin and should be driven out of this country",
]


@pytest.fixture(scope="module")
def onnx_encoder() -> OnnxTextEncoder:
    return OnnxTextEncoder(SHIPPED_ONNX_ENCODER)


def test_shipped_export_is_intact_and_close_to_pytorch(onnx_encoder: OnnxTextEncoder) -> None:
    export = onnx_encoder.export
    assert export.sha256 == file_sha256(onnx_encoder.model_file)
    assert export.encoder == "all-MiniLM-L6-v2" and export.dim == 384
    assert export.check["min_cosine"] > 0.97 and export.check["texts"] >= 500
    fast = onnx_encoder.encode(TEXTS)
    slow = load_encoder(None).encode(TEXTS)
    assert fast.shape == (len(TEXTS), 384) and fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-4)
    cosine = fast @ slow.T
    # Each row is its own text's embedding: closest to the same row of PyTorch's, and close.
    assert list(cosine.argmax(axis=1)) == list(range(len(TEXTS)))
    # A two-letter text is the worst case (0.956 when measured), alone or beside long ones.
    assert cosine.diagonal().min() > 0.94 and cosine.diagonal().mean() > 0.97


def test_shipped_graph_is_fused_and_quantised(onnx_encoder: OnnxTextEncoder) -> None:
    import onnx

    ops = collections.Counter(
        node.op_type for node in onnx.load(str(onnx_encoder.model_file)).graph.node
    )
    # One int8 attention node per layer: the eager-attention trace was fused, then quantised.
    assert ops["QAttention"] == 6 and ops["Softmax"] == 0
    assert ops["SkipLayerNormalization"] == 12 and ops["BiasGelu"] == 6
    # Activation scales fixed at export: no per-call quantisation left, int8 MatMuls to float.
    assert ops["DynamicQuantizeLinear"] == 0 and ops["QuantizeLinear"] == 24
    assert ops["MatMulIntegerToFloat"] == 18
    assert onnx_encoder.export.fused == {
        "EmbedLayerNormalization": 1, "Attention": 6, "BiasGelu": 6, "SkipLayerNormalization": 12
    }  # fmt: skip


def test_rows_keep_input_order_whatever_the_token_lengths(onnx_encoder: OnnxTextEncoder) -> None:
    default = onnx_encoder.batch_size
    onnx_encoder.batch_size = 2  # several length-sorted sub-batches
    try:
        forward = onnx_encoder.encode(TEXTS)
        backward = onnx_encoder.encode(TEXTS[::-1])[::-1]
    finally:
        onnx_encoder.batch_size = default
    # Scales are fixed, so other neighbours and other sub-batches leave each row as it was.
    np.testing.assert_allclose(forward, backward, atol=1e-5)
    assert onnx_encoder.encode([]).shape == (0, 384)


def test_token_batches_fit_the_token_budget_and_cover_every_text_once() -> None:
    lengths = np.array([12, 256, 9, 40, 256, 31, 7, 120, 12, 300])
    groups = token_batches(lengths, max_tokens=512, max_items=4)
    flat = np.concatenate(groups)
    assert sorted(flat.tolist()) == list(range(len(lengths)))  # each text once
    assert list(lengths[flat]) == sorted(lengths, reverse=True)  # longest first, ties stable
    for group in groups:
        padded = int(lengths[group].max()) * len(group)
        assert len(group) <= 4 and (padded <= 512 or len(group) == 1)
    # The long tail rides alone or in pairs; the short texts fill a call up to max_items.
    assert [len(g) for g in groups] == [1, 2, 4, 3]
    assert [i.tolist() for i in token_batches(np.array([5, 5, 5]), 10, 8)] == [[0, 1], [2]]
    assert token_batches(np.array([], dtype=int), 512, 4) == []


def test_onnx_head_matches_the_torch_head() -> None:
    torch_model = ModelArtifact.load(shipped_model_dir())
    onnx_model = ModelArtifact.load(shipped_model_dir(), onnx=True)
    assert isinstance(onnx_model.head, OnnxHead)
    X = np.random.default_rng(0).normal(size=(7, 384)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(
        onnx_model.head.predict_proba(X), torch_model.head.predict_proba(X), atol=1e-5
    )
    with pytest.raises(ModelError, match="no trainable weights"):
        onnx_model.save(Path("/nonexistent"))


class CountingEncoder:
    """The real ONNX encoder, counting the texts it is asked to embed."""

    def __init__(self, inner: OnnxTextEncoder) -> None:
        self.inner = inner
        self.name, self.dim, self.max_length = inner.name, inner.dim, inner.max_length
        self.calls: list[list[str]] = []

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts, progress)


def test_lru_encodes_each_distinct_text_once(onnx_encoder: OnnxTextEncoder) -> None:
    counting = CountingEncoder(onnx_encoder)
    lru = LruEmbeddings(counting, capacity=100)
    done: list[int] = []
    first = lru.encode(["a", "b", "a"], progress=done.append)
    assert counting.calls == [["a", "b"]] and sum(done) == 3
    np.testing.assert_array_equal(first[0], first[2])
    second = lru.encode(["b", "a", "c"])
    assert counting.calls[-1] == ["c"] and (lru.hits, lru.misses) == (3, 3)
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second[1], first[0])


def test_lru_evicts_the_least_recently_used(onnx_encoder: OnnxTextEncoder) -> None:
    counting = CountingEncoder(onnx_encoder)
    lru = LruEmbeddings(counting, capacity=2)
    lru.encode(["a"])
    lru.encode(["b"])
    lru.encode(["a"])  # a is now the most recent
    lru.encode(["c"])  # evicts b
    assert len(lru) == 2
    lru.encode(["a"])
    assert counting.calls == [["a"], ["b"], ["c"]]
    lru.encode(["b"])
    assert counting.calls[-1] == ["b"]
    with pytest.raises(ValueError, match="at least one"):
        LruEmbeddings(counting, capacity=0)


def test_default_moderator_serves_int8_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from bastion import Moderator\n"
        "m = Moderator('openai')\n"
        "v = m.moderate(['I am going to hurt you badly', 'nice photo!'])\n"
        "print(m.model_version, v[0].flagged, v[1].flagged, 'torch' in sys.modules)\n"
    )
    out = python_prints(code, timeout=300)
    version = "trained:default/all-MiniLM-L6-v2+finetuned:default@onnx-int8"
    assert out == [version, "True", "False", "False"]


def _copy_default(tmp_path: Path, **check: object) -> Path:
    model = tmp_path / "model"
    shutil.copytree(shipped_model_dir(), model)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["runtime_check"].update(check)
    (model / "manifest.json").write_text(json.dumps(manifest))
    return model


def test_auto_falls_back_to_torch_when_the_check_failed(tmp_path: Path) -> None:
    model = _copy_default(tmp_path, binary_auprc_torch=0.80, binary_auprc_onnx=0.70)
    assert not Moderator("openai", model=model).model_version.endswith("@onnx-int8")
    # Asked for explicitly, ONNX is used anyway.
    assert Moderator("openai", model=model, runtime="onnx").model_version.endswith("@onnx-int8")


def test_auto_falls_back_when_the_export_is_not_the_one_checked(tmp_path: Path) -> None:
    model = _copy_default(tmp_path, encoder_sha256="0" * 64)
    assert "@" not in Moderator("openai", model=model).model_version


def test_runtime_choice_by_argument_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "@" not in Moderator("openai", runtime="torch").model_version
    monkeypatch.setenv("BASTION_RUNTIME", "torch")
    assert "@" not in Moderator("openai").model_version
    monkeypatch.setenv("BASTION_RUNTIME", "fast")
    with pytest.raises(ModelError, match="runtime 'fast'"):
        Moderator("openai")
    monkeypatch.delenv("BASTION_RUNTIME")
    # Zero-shot (a policy the shipped model was not trained for) runs on the shipped export.
    assert Moderator("mlcommons").model_version.endswith("@onnx-int8")


def test_scores_agree_between_runtimes_on_the_sample() -> None:
    sample = Path(shipped_model_dir()).parent.parent / "sample.jsonl"
    texts = [json.loads(line)["text"] for line in sample.read_text().splitlines() if line]
    fast = Moderator("openai").moderate(texts)
    slow = Moderator("openai", runtime="torch").moderate(texts)
    diffs = [
        abs(a.category_scores[c] - b.category_scores[c])
        for a, b in zip(fast, slow, strict=True)
        for c in a.category_scores
    ]
    # The fine-tuned encoder's int8 export moves a few scores far (up to about 0.35 on this
    # sample; 0.78 at most over the 9,874 calibration rows, where flags agree on 98 %): dynamic
    # quantisation of activations suits its weights less than the base model's. The binary AUPRC
    # stays within 0.005 (the manifest's runtime check); static quantisation is issue 12's.
    assert max(diffs) < 0.5 and float(np.mean(diffs)) < 0.015
    agree = np.mean([a.flagged == b.flagged for a, b in zip(fast, slow, strict=True)])
    assert agree >= 0.95


def test_head_onnx_is_written_with_the_model(tmp_path: Path) -> None:
    art = ModelArtifact.load(shipped_model_dir())
    art.save(tmp_path / "m")
    assert (tmp_path / "m" / HEAD_ONNX).exists()
    reloaded = ModelArtifact.load(tmp_path / "m", onnx=True)
    X = np.eye(384, dtype=np.float32)[:3]
    np.testing.assert_allclose(reloaded.head.predict_proba(X), art.head.predict_proba(X), atol=1e-5)


def test_the_shipped_archive_unpacks_once_and_only_if_its_hash_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "encoder"
    shutil.copytree(SHIPPED_ONNX_ENCODER, copy)
    assert not (copy / "model.int8.onnx").exists()
    unpacked = OnnxTextEncoder(copy).model_file
    assert unpacked.is_relative_to(tmp_path / "cache") and unpacked.stat().st_size > 20e6
    before = unpacked.stat().st_mtime_ns
    assert OnnxTextEncoder(copy).model_file == unpacked and unpacked.stat().st_mtime_ns == before
    export = json.loads((copy / "export.json").read_text())
    export["sha256"] = "f" * 64
    (copy / "export.json").write_text(json.dumps(export))
    with pytest.raises(ModelError, match="does not unpack"):
        OnnxTextEncoder(copy)
    assert not list((tmp_path / "cache" / "encoders" / ("f" * 16)).iterdir())


def test_threads_spin_unless_bastion_ort_spinning_is_0(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.models.onnx_runtime import SPINNING_ENV, session_options

    key = "session.intra_op.allow_spinning"
    monkeypatch.delenv(SPINNING_ENV, raising=False)
    with pytest.raises(RuntimeError, match="does not have configuration"):  # spins: the default
        session_options().get_session_config_entry(key)
    monkeypatch.setenv(SPINNING_ENV, "0")
    assert session_options().get_session_config_entry(key) == "0"
