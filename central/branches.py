"""Branches and their bookable booths, as the central service knows them."""

from __future__ import annotations

import re
from dataclasses import asdict, fields, replace

from sqlalchemy import Connection, insert, select, update

from central import schema
from central.booking_rules import BoothRules

#: As a branch's ``branch`` and a booth's ``resource`` in the branch config.
_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class BranchError(ValueError):
    """A branch or booth that cannot be added as given."""


def put_branch(connection: Connection, branch: str, name: str) -> None:
    _check_id(branch, "branch id")
    _check_name(name)
    table = schema.branches
    if not connection.execute(update(table).where(table.c.id == branch).values(name=name)).rowcount:
        connection.execute(insert(table).values(id=branch, name=name))


def put_booth(connection: Connection, branch: str, resource: str, name: str, **rule_changes) -> BoothRules:
    """Add a booth, or rename it; ``rule_changes`` (BoothRules fields) change only the rules given.

    A new booth starts from the default rules. Returns the booth's rules as stored."""
    _check_id(resource, "booth resource")
    _check_name(name)
    if connection.execute(select(schema.branches.c.id).where(schema.branches.c.id == branch)).first() is None:
        raise BranchError(f"there is no branch {branch!r}; add it first with: omaovi central branch-add")
    table = schema.resources
    where = (table.c.branch_id == branch, table.c.resource == resource)
    existing = connection.execute(select(*_rule_columns()).where(*where)).first()
    rules = replace(BoothRules(**existing._asdict()) if existing else BoothRules(), **rule_changes)
    problems = rules.problems()
    if problems:
        raise BranchError(f"booth {resource}: " + "; ".join(problems))
    values = asdict(rules) | {"name": name}
    if existing:
        connection.execute(update(table).where(*where).values(**values))
    else:
        connection.execute(insert(table).values(branch_id=branch, resource=resource, **values))
    return rules


def booth_rules(connection: Connection, branch: str, resource: str) -> BoothRules:
    table = schema.resources
    row = connection.execute(select(*_rule_columns()).where(table.c.branch_id == branch, table.c.resource == resource)).first()
    if row is None:
        raise BranchError(f"branch {branch!r} has no bookable booth {resource!r}")
    return BoothRules(**row._asdict())


def _rule_columns():
    return [schema.resources.c[rule.name] for rule in fields(BoothRules)]


def _check_id(value: str, what: str) -> None:
    if not _ID.fullmatch(value):
        raise BranchError(f"{what} {value[:70]!r}: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit")


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > 200 or not name.isprintable():
        raise BranchError("a name must be 1-200 printable characters")
