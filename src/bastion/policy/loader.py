"""Loading policies from YAML files or built-in packs, with errors that point at file, line and field."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bastion.errors import PolicyError
from bastion.policy.schema import Policy

BUILTIN_PACKS = ("openai", "mlcommons")


class LoadedPolicy:
    """A validated policy together with where it came from and its content-addressed version."""

    def __init__(self, policy: Policy, source: str) -> None:
        self.policy = policy
        self.source = source
        self.content_hash = content_hash(policy)

    @property
    def version(self) -> str:
        """`id@version+hash`: two files with the same declared version but different rules differ here."""
        return f"{self.policy.id}@{self.policy.version}+{self.content_hash}"

    def __getattr__(self, name: str) -> Any:
        if name == "policy":  # not set yet (unpickling): no recursion through self.policy
            raise AttributeError(name)
        return getattr(self.policy, name)

    def __repr__(self) -> str:
        return f"LoadedPolicy({self.version!r}, source={self.source!r})"


def content_hash(policy: Policy) -> str:
    """Hash of the policy's meaning, not its formatting: comments and key order do not change it."""
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def load_policy(name_or_path: str | Path) -> LoadedPolicy:
    """Load a built-in pack by name (`openai`, `mlcommons`) or a policy YAML file by path."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_PACKS:
        return _load_pack(name_or_path)
    path = Path(name_or_path)
    if not path.exists():
        packs = ", ".join(BUILTIN_PACKS)
        raise PolicyError(
            str(path), [f"no such file, and not a built-in pack (built-in packs: {packs})"]
        )
    return parse_policy(path.read_text(encoding="utf-8"), source=str(path))


@lru_cache(maxsize=8)
def _load_pack(name: str) -> LoadedPolicy:
    text = resources.files("bastion.policy.packs").joinpath(f"{name}.yaml").read_text("utf-8")
    return parse_policy(text, source=f"<pack {name}>")


def parse_policy(text: str, source: str = "<string>") -> LoadedPolicy:
    """Validate YAML text as a policy; every problem is reported at once, not just the first."""
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - safe loader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise PolicyError(source, [f"{where}: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:  # e.g. a control character the reader refuses
        raise PolicyError(source, [f"not readable as YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise PolicyError(source, ["the file must be a YAML mapping with id, version, categories"])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, [_describe(err, node, data) for err in exc.errors()]) from None
    return LoadedPolicy(policy, source)


def _describe(err: Any, root: yaml.Node | None, data: Any) -> str:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    path = _format_path(loc, data)
    line = _line_of(root, loc, at_key=err["type"] == "extra_forbidden")
    where = f"line {line}: " if line else ""
    kind = err["type"]
    if kind == "extra_forbidden":
        msg = "unknown field (check the spelling; allowed fields are in `bastion policy new`)"
    elif kind == "missing":
        msg = "required field is missing"
    else:
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if "input" in err and kind not in ("model_type",) and not isinstance(err["input"], dict):
            shown = repr(err["input"])
            msg += f" (got {shown[:60]})"
    return f"{where}{path or '<top level>'}: {msg}"


def _format_path(loc: list[Any], data: Any) -> str:
    """`categories[2].severity`, with the category id added where it helps: `categories[2](hate)`."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            if isinstance(node, list) and part < len(node):
                node = node[part]
                if isinstance(node, dict) and isinstance(node.get("id"), str):
                    out += f"({node['id']})"
            else:
                node = None
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _line_of(node: yaml.Node | None, loc: list[Any], at_key: bool = False) -> int | None:
    """Walk the YAML node tree along the error's path to report a 1-based line number.

    With `at_key`, the last step reports the key's line rather than its value's (an unknown field
    is the key's fault, and a block value starts on the next line).
    """
    line = node.start_mark.line + 1 if node is not None else None
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            pairs = [(k, v) for k, v in node.value if k.value == part]
            if not pairs:
                return line
            if at_key and depth == len(loc) - 1:
                return int(pairs[0][0].start_mark.line) + 1
            node = pairs[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys, which plain YAML silently overwrites."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    "a mapping key must be a plain value, not a list or mapping",
                    key_node.start_mark,
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key '{key}' (first at line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def starter_policy_text() -> str:
    """The commented starter file written by `bastion policy new`."""
    return resources.files("bastion.policy").joinpath("starter.yaml").read_text("utf-8")


def policy_text(loaded: LoadedPolicy) -> str:
    """The policy as YAML that parses back to the same version (same content hash): what a
    project or an export freezes, whatever file or pack it was first loaded from."""
    return yaml.safe_dump(
        loaded.policy.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100
    )
