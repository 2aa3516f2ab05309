"""The rule registry: one small pure function per rule id.

A rule is `(state, now, protocol) -> list[Finding]`. It reads the state (and its
trigger: the lab result, symptom report, dose change or passing of time that is
being evaluated) and says what fires. The registry applies what holds for every
rule at once: a (rule, key) pair fires at most once, and the episode rules of the
replay contract: once therapy is stopped (a stop alert or a clinician's stop), no
deadline, titration or warning alert is raised until a dose event restarts it (stop
criteria still are: liver injury can progress after stopping); the evaluation in
which a stop criterion is met raises only its stop alerts; and no escalation advice
goes out in an evaluation that raises a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from monitor.core.domain import Finding
from monitor.core.protocol import Protocol
from monitor.core.state import PatientState

Rule = Callable[[PatientState, datetime, Protocol], list[Finding]]

RULES: dict[str, Rule] = {}

SUPPRESSED_WHILE_STOPPED = ("lab.", "titration.", "warn.")
AREA_ORDER = ("enrollment", "stop", "warn", "lab", "titration")


def rule(rule_id: str) -> Callable[[Rule], Rule]:
    """Register a rule function under its id (`area.what`)."""

    def register(fn: Rule) -> Rule:
        if rule_id in RULES:
            raise ValueError(f"rule {rule_id} registered twice")
        RULES[rule_id] = fn
        return fn

    return register


def evaluate(state: PatientState, protocol: Protocol) -> list[Finding]:
    """Every new finding for the state's trigger, in registry order (stop rules first)."""
    found: list[Finding] = []
    for rule_id, fn in RULES.items():
        for finding in fn(state, state.now, protocol):
            assert finding.rule == rule_id, f"{rule_id} returned a {finding.rule} finding"
            if state.fired(finding.rule, finding.key):
                continue
            if any(f.rule == finding.rule and f.key == finding.key for f in found):
                continue
            found.append(finding)
    if not found:  # most steps: nothing to filter or order
        return found
    if not state.on_therapy:
        found = [f for f in found if not f.rule.startswith(SUPPRESSED_WHILE_STOPPED)]
    if any(f.is_stop for f in found):
        found = [f for f in found if f.is_stop or f.rule.startswith("enrollment.")]
    if any(f.rule.startswith("warn.") for f in found):
        found = [f for f in found if f.rule != "titration.escalation_due"]
    return sorted(found, key=lambda f: AREA_ORDER.index(f.rule.split(".", 1)[0]))


from monitor.rules import enrollment, lab, stop, titration, warn  # noqa: E402

__all__ = ["RULES", "Rule", "enrollment", "evaluate", "lab", "rule", "stop", "titration", "warn"]
