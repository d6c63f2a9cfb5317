"""Tests marked `needs_shared` read the evaluation data in ../shared (beside the checkout).

Without it they skip, all under one reason line; with TANYA_REQUIRE_SHARED set (CI sets it
in .ci/run, where the data is always there) they fail instead, so a run that silently
measured nothing cannot pass.

    @pytest.mark.needs_shared("eval/seed_dev.jsonl")   # paths inside ../shared
    @pytest.mark.needs_shared                           # ../shared/eval as a whole
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MARKER = "needs_shared"
REQUIRE_ENV = "TANYA_REQUIRE_SHARED"
DEFAULT_NEEDS = ("eval",)


class SharedData:
    """The pytest plugin: skips (or fails) the marked tests whose files are missing."""

    def __init__(self, shared: Path, required: bool | None = None):
        self.shared = shared
        self.required = bool(os.environ.get(REQUIRE_ENV)) if required is None else required

    def missing(self, item: pytest.Item) -> list[str]:
        """The paths the item needs that are not there ([] when it needs none or has all)."""
        needs: list[str] = []
        for mark in item.iter_markers(MARKER):
            needs += mark.args or DEFAULT_NEEDS
        return [p for p in dict.fromkeys(needs) if not (self.shared / p).exists()]

    def reason(self, missing: list[str]) -> str:
        """One reason for all the tests a missing folder stops (a missing file is named)."""
        if not self.shared.is_dir():
            where = f"{self.shared} is missing"
        else:
            where = ", ".join(f"{self.shared / p} is missing" for p in missing)
        return (
            f"needs the evaluation data in ../shared beside the checkout: {where} "
            "(see the README: Tests)"
        )

    def pytest_report_header(self, config: pytest.Config) -> str:
        if self.shared.is_dir():
            return f"shared data: {self.shared}"
        then = f"fail ({REQUIRE_ENV} is set)" if self.required else "skip"
        return f"shared data: {self.shared} is missing; tests marked {MARKER} {then}"

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # Before the item's fixtures (a module fixture may read the data itself), and from
        # this one line, so that -ra folds every such skip into one summary line.
        missing = self.missing(item)
        if missing and self.required:
            pytest.fail(f"{self.reason(missing)}; {REQUIRE_ENV} is set", pytrace=False)
        if missing:
            pytest.skip(self.reason(missing))
