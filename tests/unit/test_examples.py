"""Every example validates against the generated CRD schema locally (schema, strict fields, CEL);
every invalid manifest is refused naming the field its first line expects."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from mosix.api import validation

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
GOOD = sorted(EXAMPLES.glob("*.yaml"))
BAD = sorted((EXAMPLES / "invalid").glob("*.yaml"))


def test_there_is_an_example_per_scenario_and_a_corpus_of_bad_ones() -> None:
    assert len(GOOD) >= 12
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_example_is_valid(path: pathlib.Path) -> None:
    body = yaml.safe_load(path.read_text())
    assert validation.errors(body["kind"], body) == []


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_invalid_manifest_is_refused_naming_the_field(path: pathlib.Path) -> None:
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# expect: ")
    expected = first.removeprefix("# expect: ").strip()
    body = yaml.safe_load(text)
    found = validation.errors(body.get("kind", "MosixJob"), body)
    assert found, f"{path.name} was accepted"
    assert expected in [e.path for e in found], found
