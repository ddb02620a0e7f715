"""Every docstring example in our packages runs and holds (rewards, judges, checks...)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

PACKAGES = ("schemas", "lake", "sandbox", "jobs", "training", "astra")
SKIP = ("sandbox.guest",)  # guest code runs inside the sandbox's interpreter, not here


def has_examples(module: ModuleType) -> bool:
    return any(test.examples for test in doctest.DocTestFinder().find(module))


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if not info.name.startswith(SKIP) and not info.name.endswith("__main__"):
                names.append(info.name)
    return sorted(n for n in names if has_examples(importlib.import_module(n)))


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    outcome = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0
