"""The README documents every api route and every setting (docs that drift are a defect)."""

from __future__ import annotations

import re

from streamq.services.api.app import create_app
from streamq.shared.settings import Settings
from tests.support import ROOT

README = (ROOT / "README.md").read_text()


def test_every_route_is_in_the_readme() -> None:
    schema = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    documented = {re.sub(r"\{[^}]+\}", "{}", p) for p in re.findall(r"`(?:GET|POST|DELETE) (/[^`]*)`", README)}
    missing = []
    for path, item in schema["paths"].items():
        for method in item:
            if re.sub(r"\{[^}]+\}", "{}", path) not in documented:
                missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_every_setting_is_in_the_readme() -> None:
    missing = [f"STREAMQ_{name.upper()}" for name in Settings.model_fields if f"STREAMQ_{name.upper()}" not in README]
    assert missing == []
