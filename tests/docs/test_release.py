"""The version is written once (nanoclone.__version__): the package metadata and the API schema read
it, the container image's label repeats it (a Dockerfile can't read it), and the changelog has an
entry for it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from django.test import Client
from setuptools.config.expand import read_attr

import nanoclone

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_takes_its_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert read_attr(attr, root_dir=ROOT) == nanoclone.__version__


@pytest.mark.django_db
def test_the_api_schema_says_the_version() -> None:
    schema = Client().get("/api/schema?format=json").json()
    assert schema["info"]["version"] == nanoclone.__version__


def test_the_changelog_has_an_entry_for_the_version_in_keep_a_changelog_form() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert re.search(rf"^## \[{re.escape(nanoclone.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)


def test_the_container_image_is_labelled_with_the_version() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'org.opencontainers.image.version="{nanoclone.__version__}"' in dockerfile
