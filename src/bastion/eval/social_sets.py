"""Adapters for the shared sets of posts, comments and chatbot conversations added on 2026-12-04.

Toxic Spans, ConvAbuse, MLMA, HateXplain and Implicit Hate are crowd-labelled: a row carries
several annotators' judgements, or several labels at once. Each loader turns them into one binary
label by a rule its adapter's description states (mostly a strict majority of annotators), keeps
the set's own categories as `native` (joined by "|" where a row has several) and drops exact
repeats of an earlier text, keeping the first. Rows whose annotators disagree, or whose labels
contradict each other, are NaN (unknown), never 0.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from bastion.errors import DatasetError
from bastion.eval.labels import NATIVE_SEPARATOR, LabelledSet
from bastion.eval.readers import (
    NAN,
    Adapter,
    RecordRows,
    Rows,
    columns_error,
    csv_rows,
    decode_text,
    delimited_table,
)

# --------------------------------------------------------------------------------------------
# Shared helpers.


class _UniqueRows(Rows):
    """Rows that drop an exact repeat of an earlier text (the first occurrence is kept)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: set[str] = set()
        self.repeated = 0

    def add(self, text: str, label: float, native: str | None, row_id: str) -> None:
        if text in self.seen:
            self.repeated += 1
            return
        if text.strip():
            self.seen.add(text)
        super().add(text, label, native, row_id)

    def count(self, label: float) -> int:
        if math.isnan(label):
            return sum(1 for b in self.binary if math.isnan(b))
        return sum(1 for b in self.binary if b == label)

    def build(self, note: str = "") -> LabelledSet:
        repeated = f"{self.repeated:,} repeated texts dropped (first occurrence kept)."
        return super().build(" ".join(s for s in (note, repeated) if s))


def _majority(count: int, total: int) -> bool:
    """More than half: 2 of 3, 3 of 4 or 5, never a tie (and never for zero annotators)."""
    return 2 * count > total


def _join(natives: Sequence[str]) -> str | None:
    return NATIVE_SEPARATOR.join(natives) or None


def _columns(source: str, header: Sequence[str], required: Sequence[str]) -> dict[str, int]:
    """Position of each required column (its first occurrence), or an error listing them all."""
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(columns_error(Path(source), "column(s)", missing, header))
    return {c: header.index(c) for c in required}


def _file_table(path: Path, delimiter: str = ",") -> tuple[list[str], RecordRows]:
    return delimited_table(str(path), decode_text(path), delimiter)


def _zip_member_text(path: Path, basename: str) -> tuple[str, str]:
    """(where, text) of the member of a zip archive whose file name is `basename`."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == basename]
            if not names:
                members = ", ".join(archive.namelist()) or "(none)"
                raise DatasetError(f"{path}: no member named {basename!r}; members: {members}")
            raw = archive.read(names[0])
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{path}: not a valid zip archive: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    where = f"{path}:{names[0]}"
    try:
        return where, raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{where}, line {line}: not valid UTF-8 (byte {raw[exc.start]:#04x})"
        ) from None


# --------------------------------------------------------------------------------------------
# Toxic Spans: Civil Comments posts with per-annotator typed spans.

_SPAN_TYPES = {  # the source's span type -> native label
    "Insult": "insult",
    "Threat": "threat",
    "Identity based Attack": "identity_attack",
    "Profane/Obscene": "profane",
    "Other Toxicity": "other_toxicity",
}
_FLAGS = {"True": True, "False": False}


def _span_type(path: Path, line: int, value: str) -> str | None:
    """The native label of a span type; a few names in spans.csv are cut short ("Insu")."""
    name = value.strip().lower()
    if not name:
        return None  # a span without a type: still a toxic vote, but no type
    hits = [native for source, native in _SPAN_TYPES.items() if source.lower().startswith(name)]
    if len(hits) != 1:
        known = ", ".join(map(repr, _SPAN_TYPES))
        raise DatasetError(f"{path}, line {line}: unknown span type {value!r}; expected {known}")
    return hits[0]


def _flag(path: Path, line: int, row: dict[str, str], column: str) -> bool:
    value = row[column].strip()
    if value not in _FLAGS:
        raise DatasetError(f"{path}, line {line}: {column!r} must be True or False, got {value!r}")
    return _FLAGS[value]


def _load_toxic_spans(folder: Path) -> LabelledSet:
    comments, annotations, spans = (
        folder / f"{n}.csv" for n in ("comments", "annotations", "spans")
    )
    texts: dict[str, str] = {}
    for line, row in csv_rows(comments, ["comment_id", "comment_text"]):
        cid = row["comment_id"].strip()
        if cid in texts:
            raise DatasetError(f"{comments}, line {line}: comment_id {cid!r} appears twice")
        texts[cid] = row["comment_text"]
    by_comment: dict[str, list[str]] = defaultdict(list)
    says_toxic: dict[str, bool] = {}  # annotation -> its flags say toxic (before spans)
    for line, row in csv_rows(annotations, ["annotation", "comment_id", "all toxic", "not toxic"]):
        ann, cid = row["annotation"].strip(), row["comment_id"].strip()
        if cid not in texts:
            raise DatasetError(
                f"{annotations}, line {line}: comment_id {cid!r} is not in {comments.name}"
            )
        if ann in says_toxic:
            raise DatasetError(f"{annotations}, line {line}: annotation {ann!r} appears twice")
        all_toxic = _flag(annotations, line, row, "all toxic")
        not_toxic = _flag(annotations, line, row, "not toxic")
        says_toxic[ann] = all_toxic and not not_toxic
        by_comment[cid].append(ann)
    spanned: set[str] = set()
    types: dict[str, set[str]] = defaultdict(set)
    for line, row in csv_rows(spans, ["annotation", "type"]):
        ann = row["annotation"].strip()
        if ann not in says_toxic:
            raise DatasetError(
                f"{spans}, line {line}: annotation {ann!r} is not in {annotations.name}"
            )
        spanned.add(ann)
        native = _span_type(spans, line, row["type"])
        if native:
            types[ann].add(native)
    rows = _UniqueRows("toxic_spans")
    for cid, text in texts.items():
        anns = by_comment.get(cid, [])
        toxic = sum(1 for a in anns if a in spanned or says_toxic[a])
        if not _majority(toxic, len(anns)):
            rows.add(text, NAN, None, cid)
            continue
        used = Counter(t for a in anns for t in types[a])
        majority = [t for t in _SPAN_TYPES.values() if _majority(used[t], len(anns))]
        rows.add(text, 1.0, _join(majority), cid)
    return rows.build(
        f"{rows.count(NAN):,} posts NaN (no majority of annotators found them toxic)."
    )


# --------------------------------------------------------------------------------------------
# ConvAbuse: user turns to two conversational agents, with up to 8 annotators each.

_CONVABUSE_SPLITS = ("train", "valid", "test")
_SEVERITY = (1, 0, -1, -2, -3)  # is_abuse.1 (not abusive), .0 (ambiguous), .-1 .. .-3 (abusive)
_ABUSE_KINDS = (
    "ableist",
    "homophobic",
    "intellectual",
    "racist",
    "sexist",
    "sex_harassment",
    "transphobic",
)
_TARGETS = ("target.generalised", "target.individual", "target.system")
_ANNOTATOR_BLOCK = (
    *(f"is_abuse.{s}" for s in _SEVERITY),
    *_ABUSE_KINDS,
    *_TARGETS,
    "explicit",
    "implicit",
)
_CONVABUSE_NATIVES = _ABUSE_KINDS + tuple(t.replace(".", "_") for t in _TARGETS)
_ANNOTATOR_START = re.compile(r"Annotator(\d+)_is_abuse\.1")


def _annotator_blocks(path: Path, header: list[str]) -> list[int]:
    """Where each annotator's columns start. Checked by suffix only: the header names annotator
    7's and 8's transphobic columns 'Annotator6_transphobic'."""
    starts = [i for i, name in enumerate(header) if _ANNOTATOR_START.fullmatch(name)]
    if not starts:
        raise DatasetError(f"{path}: no 'AnnotatorN_is_abuse.1' columns in the header")
    for start in starts:
        for offset, suffix in enumerate(_ANNOTATOR_BLOCK):
            i = start + offset
            name = header[i] if i < len(header) else "(none)"
            if name.partition("_")[2] != suffix:
                raise DatasetError(
                    f"{path}: column {i + 1} is {name!r}; expected an annotator's {suffix!r} "
                    f"column after {header[start]!r}"
                )
    return starts


def _cell(path: Path, line: int, column: str, value: str) -> bool | None:
    """An annotator's 0/1 cell; an annotator who labelled a turn twice has "1, 0": the first
    annotation counts. Empty: the annotator did not label it."""
    first = value.partition(",")[0].strip()
    if not first:
        return None
    if first not in ("0", "1"):
        raise DatasetError(f"{path}, line {line}: {column!r} must be 0 or 1, got {value!r}")
    return first == "1"


def _load_convabuse(folder: Path) -> LabelledSet:
    rows = _UniqueRows("convabuse")
    width = len(_ANNOTATOR_BLOCK)
    for split in _CONVABUSE_SPLITS:
        path = folder / f"ConvAbuseEMNLP{split}.csv"
        header, records = _file_table(path)
        col = _columns(str(path), header, ["example_id", "user"])
        starts = _annotator_blocks(path, header)
        for line, values in records(len(header)):
            votes: list[int] = []
            marked: Counter[str] = Counter()
            for start in starts:
                block = values[start : start + width]
                cells = [_cell(path, line, header[start + j], v) for j, v in enumerate(block)]
                if all(c is None for c in cells[: len(_SEVERITY)]):
                    continue  # this annotator did not label the turn
                levels = [s for s, c in zip(_SEVERITY, cells, strict=False) if c]
                if len(levels) != 1:
                    who = header[start].partition("_")[0]
                    raise DatasetError(
                        f"{path}, line {line}: {who} marks {len(levels)} abuse levels; "
                        "expected exactly one of is_abuse.1 .. is_abuse.-3"
                    )
                votes.append(levels[0])
                flags = cells[len(_SEVERITY) : len(_SEVERITY) + len(_CONVABUSE_NATIVES)]
                marked.update(n for n, c in zip(_CONVABUSE_NATIVES, flags, strict=True) if c)
            row_id = f"{split}:{values[col['example_id']].strip()}"
            text = values[col["user"]]
            if _majority(sum(1 for v in votes if v < 0), len(votes)):
                native = [n for n in _CONVABUSE_NATIVES if _majority(marked[n], len(votes))]
                rows.add(text, 1.0, _join(native), row_id)
            elif _majority(sum(1 for v in votes if v == 1), len(votes)):
                rows.add(text, 0.0, None, row_id)
            else:
                rows.add(text, NAN, None, row_id)
    return rows.build(f"{rows.count(NAN):,} turns NaN (no majority either way).")


# --------------------------------------------------------------------------------------------
# MLMA: English tweets with one or several hostility types.

_MLMA_TYPES = ("hateful", "abusive", "offensive", "disrespectful", "fearful", "normal")


def _load_mlma(path: Path) -> LabelledSet:
    where, text = _zip_member_text(path, "en_dataset.csv")
    header, records = delimited_table(where, text)
    col = _columns(where, header, ["HITId", "tweet", "sentiment"])
    rows = _UniqueRows("mlma")
    for line, values in records(max(col.values()) + 1):
        sentiment = values[col["sentiment"]].strip()
        parts = sentiment.split("_")
        if any(p not in _MLMA_TYPES for p in parts):
            known = ", ".join(_MLMA_TYPES)
            raise DatasetError(
                f"{where}, line {line}: sentiment {sentiment!r} is not hostility types from "
                f"{known} joined by '_'"
            )
        row_id = values[col["HITId"]].strip() or str(line)
        if "normal" in parts:  # 'normal' alone is too often a slur-laden tweet to trust as 0
            rows.add(values[col["tweet"]], NAN, None, row_id)
        else:
            native = [t for t in _MLMA_TYPES if t in parts]
            rows.add(values[col["tweet"]], 1.0, _join(native), row_id)
    return rows.build(f"{rows.count(NAN):,} tweets NaN (labelled 'normal', alone or mixed).")


# --------------------------------------------------------------------------------------------
# HateXplain: tweets and Gab posts, majority label normal / offensive / hate speech.

_HATEXPLAIN = {"0": (0.0, None), "1": (1.0, "offensive"), "2": (1.0, "hate")}


def _load_hatexplain(path: Path) -> LabelledSet:
    rows = _UniqueRows("hatexplain")
    for line, row in csv_rows(path, ["text", "label"]):
        value = row["label"].strip()
        if value not in _HATEXPLAIN:
            raise DatasetError(f"{path}, line {line}: label must be 0, 1 or 2, got {value!r}")
        label, native = _HATEXPLAIN[value]
        rows.add(row["text"], label, native, str(line))
    return rows.build()


# --------------------------------------------------------------------------------------------
# Implicit Hate (Latent Hatred): stage-1 classes, with stage-2 implicit subtypes joined by ID.

_IMPLICIT_CLASSES = ("not_hate", "implicit_hate", "explicit_hate")
_IMPLICIT_SUBTYPES = (
    "white_grievance",
    "incitement",
    "inferiority",
    "irony",
    "stereotypical",
    "threatening",
    "other",
)


def _implicit_class(path: Path, line: int, value: str, known: Sequence[str]) -> str:
    name = value.strip()
    if name not in known:
        raise DatasetError(
            f"{path}, line {line}: class must be one of {', '.join(known)}, got {value!r}"
        )
    return name


def _load_implicit_hate(folder: Path) -> LabelledSet:
    posts_path = folder / "implicit_hate_v1_stg1_posts.tsv"
    ids_path = folder / "implicit_hate_v1_stg1.tsv"
    stage2_path = folder / "implicit_hate_v1_stg2.tsv"
    # The posts file has no IDs; the ID file lists the same posts in the same order.
    header, records = _file_table(ids_path, "\t")
    col = _columns(str(ids_path), header, ["ID", "class"])
    stage1: list[tuple[int, str, str]] = []
    for line, values in records(max(col.values()) + 1):
        cls = _implicit_class(ids_path, line, values[col["class"]], _IMPLICIT_CLASSES)
        stage1.append((line, values[col["ID"]].strip(), cls))
    header, records = _file_table(stage2_path, "\t")
    col = _columns(str(stage2_path), header, ["ID", "implicit_class", "extra_implicit_class"])
    known_ids = {post_id for _, post_id, _ in stage1}
    subtypes: dict[str, list[str]] = {}
    for line, values in records(max(col.values()) + 1):
        post_id = values[col["ID"]].strip()
        if post_id not in known_ids:
            raise DatasetError(
                f"{stage2_path}, line {line}: ID {post_id!r} is not in {ids_path.name}"
            )
        first = _implicit_class(
            stage2_path, line, values[col["implicit_class"]], _IMPLICIT_SUBTYPES
        )
        extra = values[col["extra_implicit_class"]].strip()
        found = {first}
        if extra:
            found.add(_implicit_class(stage2_path, line, extra, _IMPLICIT_SUBTYPES))
        subtypes[post_id] = [s for s in _IMPLICIT_SUBTYPES if s in found]
    header, records = _file_table(posts_path, "\t")
    col = _columns(str(posts_path), header, ["post", "class"])
    rows = _UniqueRows("implicit_hate")
    n = 0
    for line, values in records(max(col.values()) + 1):
        if n >= len(stage1):
            raise DatasetError(
                f"{posts_path}, line {line}: more posts than {ids_path.name} has IDs "
                f"({len(stage1):,}); the two files must list the same posts in the same order"
            )
        id_line, post_id, cls = stage1[n]
        n += 1
        if _implicit_class(posts_path, line, values[col["class"]], _IMPLICIT_CLASSES) != cls:
            raise DatasetError(
                f"{posts_path}, line {line}: class {values[col['class']]!r} differs from "
                f"{ids_path.name}, line {id_line} ({cls!r}); the two files must list the same "
                "posts in the same order"
            )
        text = values[col["post"]]
        kinds = subtypes.get(post_id, [])
        if cls == "not_hate":
            # stage 2 gave an implicit-hate subtype to a few posts stage 1 called not hate
            rows.add(text, NAN if kinds else 0.0, None, post_id)
        else:
            rows.add(text, 1.0, _join([cls, *kinds]), post_id)
    if n != len(stage1):
        raise DatasetError(
            f"{posts_path}: {n:,} posts but {ids_path.name} has {len(stage1):,} IDs; the two "
            "files must list the same posts in the same order"
        )
    return rows.build(
        f"{rows.count(NAN):,} posts NaN (stage 1 'not_hate' but given a stage-2 subtype)."
    )


# --------------------------------------------------------------------------------------------
# Label maps onto the built-in packs.

_TOXIC_SPANS_MAPS = {
    "openai": {"insult": ["harassment"], "threat": ["violence"], "identity_attack": ["hate"]},
    "mlcommons": {"threat": ["s1"], "identity_attack": ["s10"]},
}
_CONVABUSE_MAPS = {  # 'transphobic' never reaches a majority of annotators, so it is not listed
    "openai": {
        "ableist": ["hate"],
        "homophobic": ["hate"],
        "racist": ["hate"],
        "sexist": ["hate"],
        "sex_harassment": ["sexual"],
        "target_individual": ["harassment"],
    },
    "mlcommons": {
        "ableist": ["s10"],
        "homophobic": ["s10"],
        "racist": ["s10"],
        "sexist": ["s10"],
        "sex_harassment": ["s12"],
    },
}
_MLMA_MAPS = {"openai": {"hateful": ["hate"]}, "mlcommons": {"hateful": ["s10"]}}
_HATEXPLAIN_MAPS = {"openai": {"hate": ["hate"]}, "mlcommons": {"hate": ["s10"]}}
_IMPLICIT_HATE_MAPS = {
    "openai": {"implicit_hate": ["hate"], "explicit_hate": ["hate"]},
    "mlcommons": {"implicit_hate": ["s10"], "explicit_hate": ["s10"]},
}

ADAPTERS: list[Adapter] = [
    Adapter(
        "toxic_spans",
        "toxic_spans",
        "CC0-1.0",
        "ship-ok",
        "posts",
        "Civil Comments posts that Civil Comments raters had found toxic, re-annotated for toxic "
        "spans by 3 to 7 crowd raters (one quiz post by 357); reads comments.csv, annotations.csv "
        "and spans.csv (the SemEval tsd_*.csv files are not read). An annotation votes toxic when "
        "it marks a span, or ticks 'all toxic' without 'not toxic'; it votes not toxic when it "
        "ticks 'not toxic' and marks no span (most such annotations tick both boxes). 1 when more "
        "than half of a post's annotations vote toxic; NaN otherwise (the source called the post "
        "toxic, most span annotators did not). No row is 0: pair with safe rows from other sets. "
        "native: the span types that more than half of the post's annotators used, in the order "
        "insult, threat, identity_attack, profane, other_toxicity (cut-short type names in "
        "spans.csv read as the type they begin); None when no type has a majority. Maps: insult -> "
        "harassment; threat -> violence / s1 (mostly calls for violence against groups or unnamed "
        "people, so not harassment/threatening); identity_attack -> hate / s10; profane and "
        "other_toxicity unmapped. Ids are comment_id.",
        _load_toxic_spans,
        _TOXIC_SPANS_MAPS,
    ),
    Adapter(
        "convabuse",
        "convabuse",
        "CC-BY-4.0",
        "ship-ok",
        "prompts",
        "User turns to two conversational agents (E.L.I.Z.A. and CarbonBot), from the train, valid "
        "and test files; text is the user turn alone (the previous turns are not prepended). Each "
        "of 2 to 7 annotators picks an abuse level: 1 not abusive, 0 ambiguous, -1 to -3 abusive "
        "(an annotator who labelled a turn twice counts once, with the first label). 1 when more "
        "than half of the annotators chose -1 to -3; 0 when more than half chose 1; NaN otherwise. "
        "native (abusive rows): the abuse kinds (ableist, homophobic, intellectual, racist, "
        "sexist, sex_harassment, transphobic) and targets (target_generalised, target_individual, "
        "target_system) that more than half of the annotators marked; most abuse targets the agent "
        "itself. Maps: ableist, homophobic, racist, sexist -> hate / s10 (transphobic never has a "
        "majority); sex_harassment -> sexual / s12 (sexual remarks and requests, mostly to the "
        "agent); target_individual -> harassment (abuse aimed at a person); intellectual (insults "
        "to intelligence, nearly always aimed at the agent) unmapped, as the packs do not count "
        "insults to software as harassment. Ids are 'split:example_id'.",
        _load_convabuse,
        _CONVABUSE_MAPS,
    ),
    Adapter(
        "mlma",
        "mlma/hate_speech_mlma.zip",
        "MIT",
        "ship-ok",
        "posts",
        "English tweets of MLMA (en_dataset.csv inside the zip; the source lower-cased them and "
        "removed stop words). Each has one or more hostility types (the source kept those two "
        "annotators agreed on), joined by '_'. 1 when every type is hostile (hateful, abusive, "
        "offensive, disrespectful, fearful); NaN when 'normal' is among them, alone or mixed: the "
        "tweets were collected by slur keywords and many labelled normal alone still use a slur, "
        "so they are not clearly safe. No row is 0. native: the hostile types in the order "
        "hateful, abusive, offensive, disrespectful, fearful. Maps: hateful -> hate / s10; the "
        "others unmapped. Ids are HITId.",
        _load_mlma,
        _MLMA_MAPS,
    ),
    Adapter(
        "hatexplain",
        "hatexplain/preprocessed.csv",
        "upstream MIT, repack Apache-2.0",
        "ship-ok",
        "posts",
        "HateXplain tweets and Gab posts (detokenised, no punctuation; the repack kept posts where "
        "at least 2 of 3 annotators agreed). 1 for label 2 (native 'hate') and label 1 (native "
        "'offensive'), 0 for label 0 (normal). Maps: hate -> hate / s10; offensive unmapped (a mix "
        "of slurs, insults, sexual remarks and group prejudice, so unknown per category). Not "
        "exclusive: a hate post can also be violent. Ids are line numbers.",
        _load_hatexplain,
        _HATEXPLAIN_MAPS,
    ),
    Adapter(
        "implicit_hate",
        "implicit_hate",
        "CC-BY-4.0",
        "ship-ok",
        "posts",
        "Latent Hatred tweets: stage-1 posts (implicit_hate_v1_stg1_posts.tsv, with IDs from "
        "implicit_hate_v1_stg1.tsv, which lists the same posts in the same order). 1 for "
        "implicit_hate and explicit_hate, 0 for not_hate; NaN for a not_hate post that stage 2 "
        "nevertheless gave an implicit-hate subtype. native: the stage-1 class, then the stage-2 "
        "subtypes joined by ID (white_grievance, incitement, inferiority, irony, stereotypical, "
        "threatening, other). Maps: implicit_hate, explicit_hate -> hate / s10; subtypes add "
        "nothing: 'threatening' is mostly calls for deportation or loss of rights, not violence, "
        "and 'incitement' mostly promotes white-nationalist groups. Ids are the stage-1 IDs.",
        _load_implicit_hate,
        _IMPLICIT_HATE_MAPS,
    ),
]
