"""Policy as code: the schema, loading and the built-in packs."""

from bastion.policy.loader import (
    BUILTIN_PACKS,
    LoadedPolicy,
    content_hash,
    load_policy,
    parse_policy,
    starter_policy_text,
)
from bastion.policy.schema import (
    UNSCORED_ACTION,
    Action,
    Bands,
    Category,
    DecisionStep,
    Policy,
    Rule,
)

__all__ = [
    "BUILTIN_PACKS",
    "UNSCORED_ACTION",
    "Action",
    "Bands",
    "Category",
    "DecisionStep",
    "LoadedPolicy",
    "Policy",
    "Rule",
    "content_hash",
    "load_policy",
    "parse_policy",
    "starter_policy_text",
]
