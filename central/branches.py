"""Branches and their bookable booths, as the central service knows them."""

from __future__ import annotations

import re

from sqlalchemy import Connection, insert, select, update

from central import schema

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


def put_booth(connection: Connection, branch: str, resource: str, name: str) -> None:
    _check_id(resource, "booth resource")
    _check_name(name)
    if connection.execute(select(schema.branches.c.id).where(schema.branches.c.id == branch)).first() is None:
        raise BranchError(f"there is no branch {branch!r}; add it first with: omaovi central branch-add")
    table = schema.resources
    where = (table.c.branch_id == branch, table.c.resource == resource)
    if not connection.execute(update(table).where(*where).values(name=name)).rowcount:
        connection.execute(insert(table).values(branch_id=branch, resource=resource, name=name))


def _check_id(value: str, what: str) -> None:
    if not _ID.fullmatch(value):
        raise BranchError(f"{what} {value[:70]!r}: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit")


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > 200 or not name.isprintable():
        raise BranchError("a name must be 1-200 printable characters")
