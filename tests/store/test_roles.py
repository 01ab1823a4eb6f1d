"""The store's role interfaces (store/roles.py): each is a part of ``Store``, word for word, and
``SqlStore`` satisfies each (the assignments below are checked by mypy over the tests)."""

from __future__ import annotations

import inspect

import pytest

from dispatcher.store import Store
from dispatcher.store.roles import PlannerStore, SenderStore, WebStore
from dispatcher.store.sql import SqlStore

ROLES = (SenderStore, PlannerStore, WebStore)


def _typed(store: SqlStore) -> tuple[SenderStore, PlannerStore, WebStore]:
    return store, store, store  # mypy: SqlStore has every call of every role


def members(role: type) -> list[str]:
    return [name for name in vars(role) if not name.startswith("_")]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.__name__)
def test_each_role_is_a_part_of_the_store_interface(role: type) -> None:
    assert role in Store.__mro__
    assert members(role)
    for name in members(role):
        mine, theirs = inspect.getattr_static(role, name), inspect.getattr_static(Store, name)
        if isinstance(mine, property):
            assert isinstance(theirs, property), name
            mine, theirs = mine.fget, theirs.fget
        assert inspect.signature(mine) == inspect.signature(theirs), name
