"""The rules document: which VM ipconfigs belong in which IP-based backend pool.

`parse_rules` / `load_rules` turn the JSON document into a validated, immutable `RuleSet` or raise one
`RulesError` listing every problem found (schema, CIDRs, resource ids, duplicates, overlaps), each naming
the rule and the field; the JSON Schema itself is `shared.core.rules_schema`. Checks that need facts from
Azure live in `shared.core.rules_azure.validate_against_azure`, which the I/O side calls at start-up with
the facts it fetched. Nothing here does I/O except reading the rules file.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from shared import settings
from shared.core.cidr_index import MembershipIndex
from shared.core.ids import InvalidResourceId, ResourceId, id_key
from shared.core.models import VirtualMachine
from shared.core.rules_schema import schema_problems
from shared.errors import ConfigurationError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RULES_ENV = settings.RULES.name
RULES_FILE_ENV = settings.RULES_FILE.name
IPCONFIG_PRIMARY = "primary"
IPCONFIG_ALL = "all"
ANY_VALUE = "*"

ERROR = "error"
NOTE = "note"


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One finding about the rules; `path` is JSON-pointer-ish, e.g. ``rules[2].cidrs[0]``."""

    path: str
    message: str
    rule_name: str | None = None
    rule_index: int | None = None
    severity: str = ERROR

    def __str__(self) -> str:
        where = f"rule {self.rule_name!r} ({self.path})" if self.rule_name else (self.path or "document")
        return f"{where}: {self.message}"


class RulesError(ConfigurationError, ValueError):
    """The rules document is unusable; `problems` lists every reason at once."""

    def __init__(self, problems: Sequence[RuleProblem], source: str = "rules") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in rules from {source}:\n{lines}")


def _compile_globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """One validated rule. Tag keys are stored lower-cased (Azure tag names are case-insensitive)."""

    name: str
    index: int
    pool_id: str
    virtual_network_id: str
    cidrs: tuple[IpNetwork, ...]
    tags: tuple[tuple[str, str], ...] = ()
    resource_groups: tuple[str, ...] = ()
    vm_names: tuple[str, ...] = ()
    ip_configurations: str = IPCONFIG_PRIMARY
    scale_sets: tuple[str, ...] = ()  # scale set ids, or globs on a scale set's name
    # derived once: the membership hot path reads them per matching ipconfig
    pool_key: str = field(default="", init=False, repr=False, compare=False)
    vnet_key: str = field(default="", init=False, repr=False, compare=False)
    _rg_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _vm_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _scale_set_ids: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    _scale_set_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pool_key", id_key(self.pool_id))
        object.__setattr__(self, "vnet_key", id_key(self.virtual_network_id))
        object.__setattr__(self, "_rg_re", _compile_globs(self.resource_groups))
        object.__setattr__(self, "_vm_re", _compile_globs(self.vm_names))
        ids = frozenset(id_key(s) for s in self.scale_sets if s.startswith("/"))
        object.__setattr__(self, "_scale_set_ids", ids)
        object.__setattr__(self, "_scale_set_re",
                           _compile_globs([s for s in self.scale_sets if not s.startswith("/")]))

    @property
    def lb_id(self) -> str:
        return str(ResourceId.parse(self.pool_id).parent)

    @property
    def primary_only(self) -> bool:
        return self.ip_configurations == IPCONFIG_PRIMARY

    def matches_vm(self, vm: VirtualMachine, lowered_tags: Mapping[str, str] | None = None) -> bool:
        """Tag, resource-group and VM-name filters (the CIDR test is done by the membership index).

        `lowered_tags` lets a caller evaluating many rules lower-case the VM's tag keys once.
        """
        if self.tags:
            vm_tags = lowered_tags if lowered_tags is not None else lower_tag_keys(vm.tags)
            for key, wanted in self.tags:
                actual = vm_tags.get(key)
                if actual is None or (wanted != ANY_VALUE and actual != wanted):
                    return False
        if self._rg_re is not None and not self._rg_re.match(vm.resource_group):
            return False
        if self.scale_sets and not self._in_scale_sets(vm.scale_set_id):
            return False
        return self._vm_re is None or self._vm_re.match(vm.name) is not None

    def _in_scale_sets(self, scale_set_id: str | None) -> bool:
        """A VM of a scale set the rule names (by id, or by a glob on the set's name)."""
        if not scale_set_id:
            return False
        if id_key(scale_set_id) in self._scale_set_ids:
            return True
        name = scale_set_id.rstrip("/").rsplit("/", 1)[-1]
        return self._scale_set_re is not None and self._scale_set_re.match(name) is not None


def lower_tag_keys(tags: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in tags.items()}


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str = "rules"
    notes: tuple[RuleProblem, ...] = ()  # non-blocking findings worth logging at start-up

    def managed_pool_ids(self) -> list[str]:
        """Pools the rules target, each once (first spelling wins), in rule order."""
        return _unique_ids(rule.pool_id for rule in self.rules)

    def managed_lb_ids(self) -> list[str]:
        return _unique_ids(rule.lb_id for rule in self.rules)

    def rules_for_pool(self, pool_id: str) -> tuple[Rule, ...]:
        return self._by_pool.get(id_key(pool_id), ())

    def rules_for_vnet(self, vnet_id: str) -> tuple[Rule, ...]:
        return self._by_vnet.get(id_key(vnet_id), ())

    @cached_property
    def _by_pool(self) -> dict[str, tuple[Rule, ...]]:
        return _group(self.rules, lambda rule: rule.pool_key)

    @cached_property
    def _by_vnet(self) -> dict[str, tuple[Rule, ...]]:
        return _group(self.rules, lambda rule: rule.vnet_key)

    @cached_property
    def membership_index(self) -> MembershipIndex[Rule]:
        """Built once per rule set, reused by every membership evaluation."""
        return MembershipIndex(self.rules)


def _unique_ids(ids: Iterable[str]) -> list[str]:
    unique: dict[str, str] = {}
    for resource_id in ids:
        unique.setdefault(id_key(resource_id), resource_id)
    return list(unique.values())


def _group(rules: Iterable[Rule], key: Any) -> dict[str, tuple[Rule, ...]]:
    grouped: dict[str, list[Rule]] = defaultdict(list)
    for rule in rules:
        grouped[key(rule)].append(rule)
    return {k: tuple(v) for k, v in grouped.items()}


# --- loading -------------------------------------------------------------------------------------


def load_rules(env: Mapping[str, str]) -> RuleSet:
    """Rules from app settings: POOLSYNC_RULES (inline JSON) or POOLSYNC_RULES_FILE (a path)."""
    inline = settings.RULES.text(env)
    path = settings.RULES_FILE.text(env)
    if inline and path:
        raise RulesError(
            [RuleProblem("", f"set either {RULES_ENV} or {RULES_FILE_ENV}, not both")], "app settings"
        )
    if inline:
        return parse_rules(inline, f"app setting {RULES_ENV}")
    if path:
        try:
            text = _rules_path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise RulesError(
                [RuleProblem("", f"cannot read rules file: {error.strerror or error}")], path
            ) from error
        return parse_rules(text, path)
    raise RulesError(
        [
            RuleProblem(
                "",
                f"no rules configured: set {RULES_ENV} (inline JSON) or {RULES_FILE_ENV} "
                "(path to a JSON file)",
            )
        ],
        "app settings",
    )


def _rules_path(path: str) -> Path:
    """A relative path is relative to the app root (where function_app.py lives), as deployed."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return Path(__file__).resolve().parents[2] / candidate


def parse_rules(document: Mapping[str, Any] | str, source: str = "rules") -> RuleSet:
    """Validate a rules document (parsed or JSON text); `source` names it in errors."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as error:
            raise RulesError(
                [RuleProblem("", f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}")],
                source,
            ) from error
    problems = [RuleProblem(*found) for found in schema_problems(document)]
    rules: list[Rule] = []
    names: list[tuple[int, str]] = []
    raw_rules = document.get("rules") if isinstance(document, Mapping) else None
    for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
        if not isinstance(raw, Mapping):
            continue
        if isinstance(raw.get("name"), str):
            names.append((index, raw["name"]))
        rule = _build_rule(index, raw, problems)
        if rule is not None:
            rules.append(rule)
    notes = _cross_rule_checks(rules, names, problems)
    errors = [problem for problem in problems if problem.severity == ERROR]
    if errors:
        raise RulesError(errors, source)
    return RuleSet(tuple(rules), source, tuple(notes))


# --- per-rule semantics ----------------------------------------------------------------------------


def _parse_cidr(text: str) -> tuple[IpNetwork | None, str | None]:
    try:
        return ipaddress.ip_network(text, strict=True), None
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None, f"{text!r} is not an IPv4 or IPv6 CIDR"
    return None, f"{text!r} has host bits set (did you mean {loose}?)"


def _check_resource_id(
    value: Any, want_type: str, want_child: str | None, example: str
) -> tuple[ResourceId | None, str | None]:
    if not isinstance(value, str):
        return None, None  # the schema already reported the type
    try:
        parsed = ResourceId.parse(value)
    except InvalidResourceId as error:
        return None, f"{error}; expected {example}"
    child = (parsed.child_type or "").lower() or None
    if (
        parsed.namespace.lower() != "microsoft.network"
        or parsed.type.lower() != want_type.lower()
        or child != (want_child.lower() if want_child else None)
    ):
        return None, f"is a {parsed.full_type} id; expected {example}"
    return parsed, None


_POOL_EXAMPLE = ".../providers/Microsoft.Network/loadBalancers/<lb>/backendAddressPools/<pool>"
_VNET_EXAMPLE = ".../providers/Microsoft.Network/virtualNetworks/<vnet>"


def _build_rule(index: int, raw: Mapping[str, Any], problems: list[RuleProblem]) -> Rule | None:
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    label = name or None

    def problem(field_path: str, message: str) -> None:
        problems.append(RuleProblem(f"rules[{index}].{field_path}", message, label, index))

    pool, message = _check_resource_id(raw.get("pool"), "loadBalancers", "backendAddressPools", _POOL_EXAMPLE)
    if message:
        problem("pool", message)
    vnet, message = _check_resource_id(raw.get("virtualNetwork"), "virtualNetworks", None, _VNET_EXAMPLE)
    if message:
        problem("virtualNetwork", message)

    cidrs: list[IpNetwork] = []
    raw_cidrs = raw.get("cidrs")
    for position, text in enumerate(raw_cidrs if isinstance(raw_cidrs, list) else []):
        if not isinstance(text, str):
            continue  # reported by the schema
        network, message = _parse_cidr(text)
        if message:
            problem(f"cidrs[{position}]", message)
        elif network is not None:
            cidrs.append(network)

    tags: list[tuple[str, str]] = []
    raw_tags = raw.get("tags")
    if isinstance(raw_tags, Mapping):
        seen: dict[str, str] = {}
        for key, value in raw_tags.items():
            if key.lower() in seen:
                problem(
                    f"tags.{key}", f"duplicates tag key {seen[key.lower()]!r} (tag keys are case-insensitive)"
                )
            seen[key.lower()] = key
            if isinstance(value, str):
                tags.append((key.lower(), value))

    globs: dict[str, tuple[str, ...]] = {}
    for key in ("resourceGroups", "vmNames"):
        patterns = raw.get(key)
        globs[key] = tuple(p for p in patterns if isinstance(p, str)) if isinstance(patterns, list) else ()

    scale_sets: list[str] = []
    raw_sets = raw.get("scaleSets")
    for position, text in enumerate(raw_sets if isinstance(raw_sets, list) else []):
        if not isinstance(text, str):
            continue  # reported by the schema
        if text.startswith("/"):
            set_id, message = _check_scale_set_id(text)
            if message:
                problem(f"scaleSets[{position}]", message)
                continue
            text = str(set_id)
        scale_sets.append(text)

    ip_configurations = raw.get("ipConfigurations", IPCONFIG_PRIMARY)
    if ip_configurations not in (IPCONFIG_PRIMARY, IPCONFIG_ALL):
        ip_configurations = IPCONFIG_PRIMARY  # reported by the schema
    if pool is None or vnet is None or name is None or not cidrs:
        return None
    # built even when other fields had problems, so checks across rules still report on it
    return Rule(
        name=name,
        index=index,
        pool_id=str(pool),
        virtual_network_id=str(vnet),
        cidrs=tuple(cidrs),
        tags=tuple(tags),
        resource_groups=globs["resourceGroups"],
        vm_names=globs["vmNames"],
        ip_configurations=ip_configurations,
        scale_sets=tuple(scale_sets),
    )


_SCALE_SET_EXAMPLE = ".../providers/Microsoft.Compute/virtualMachineScaleSets/<scale set>"


def _check_scale_set_id(text: str) -> tuple[ResourceId | None, str | None]:
    try:
        parsed = ResourceId.parse(text)
    except InvalidResourceId as error:
        return None, f"{error}; expected {_SCALE_SET_EXAMPLE} or a glob on the scale set's name"
    if parsed.child_type or parsed.full_type.lower() != "microsoft.compute/virtualmachinescalesets":
        return None, f"is a {parsed.full_type} id; expected {_SCALE_SET_EXAMPLE}"
    return parsed, None


# --- checks across rules ---------------------------------------------------------------------------


def _cross_rule_checks(
    rules: Sequence[Rule], names: Sequence[tuple[int, str]], problems: list[RuleProblem]
) -> list[RuleProblem]:
    notes: list[RuleProblem] = []
    first_by_name: dict[str, int] = {}
    for index, name in names:
        earlier = first_by_name.setdefault(name.lower(), index)
        if earlier != index:
            problems.append(
                RuleProblem(
                    f"rules[{index}].name",
                    f"duplicate rule name (also rules[{earlier}]; names compare case-insensitively)",
                    name,
                    index,
                )
            )

    for pool_rules in _group(rules, lambda rule: rule.pool_key).values():
        first = pool_rules[0]
        for rule in pool_rules[1:]:
            if rule.vnet_key != first.vnet_key:
                problems.append(
                    RuleProblem(
                        f"rules[{rule.index}].virtualNetwork",
                        f"differs from rule {first.name!r} for the same pool; an IP-based pool holds "
                        "addresses of one virtual network only",
                        rule.name,
                        rule.index,
                    )
                )
        problems.extend(_overlaps(pool_rules))

    for rule in rules:
        pool_sub = ResourceId.parse(rule.pool_id).subscription.lower()
        vnet_sub = ResourceId.parse(rule.virtual_network_id).subscription.lower()
        if pool_sub != vnet_sub:
            notes.append(
                RuleProblem(
                    f"rules[{rule.index}].virtualNetwork",
                    f"is in subscription {vnet_sub}, the pool in {pool_sub} (allowed; the identity needs "
                    "read access to both)",
                    rule.name,
                    rule.index,
                    NOTE,
                )
            )
    return notes


def _overlaps(pool_rules: Sequence[Rule]) -> list[RuleProblem]:
    """CIDRs of different rules for one pool must not overlap: an address would match two rules.

    Prefixes are nested or disjoint, so a sweep over the sorted ranges that remembers the widest
    range still open finds every overlapping pair of rules at least once in O(n log n).
    """
    problems: list[RuleProblem] = []
    for version in (4, 6):
        ranges = sorted(
            (
                (int(net.network_address), -int(net.broadcast_address), rule, position, net)
                for rule in pool_rules
                for position, net in enumerate(rule.cidrs)
                if net.version == version
            ),
            key=lambda item: (item[0], item[1], item[2].index),
        )
        open_range: tuple[int, Rule, int, IpNetwork] | None = None
        for start, negative_end, rule, position, net in ranges:
            if open_range is not None and start <= open_range[0] and open_range[1] is not rule:
                _, other, other_position, other_net = open_range
                problems.append(
                    RuleProblem(
                        f"rules[{rule.index}].cidrs[{position}]",
                        f"{net} overlaps {other_net} of rule {other.name!r} "
                        f"(rules[{other.index}].cidrs[{other_position}]) for the same pool",
                        rule.name,
                        rule.index,
                    )
                )
            if open_range is None or -negative_end > open_range[0]:
                open_range = (-negative_end, rule, position, net)
    return problems
