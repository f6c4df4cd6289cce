"""The portal's forms, made from the model: fields come in the order people fill them in."""

from __future__ import annotations

from opennimble.portal import forms
from opennimble.protocol import model


def paths(fields: list[forms.Field]) -> list[str]:
    return [f.path for f in fields]


def test_name_and_description_come_first_then_required_then_optional_fields() -> None:
    fields, _ = forms.build(model.operations()["CreateLaunchProfile"].input)
    assert paths(fields) == [
        "name",
        "description",
        "ec2SubnetIds",
        "launchProfileProtocolVersions",
        "streamConfiguration",
        "studioComponentIds",
    ]
    stream = next(f for f in fields if f.path == "streamConfiguration")
    children = stream.children
    required = [f.required for f in children]
    assert required == sorted(required, reverse=True)  # every required one before the others
    assert children[0].path == "streamConfiguration.clipboardMode"


def test_a_studio_form_starts_with_its_display_name() -> None:
    fields, _ = forms.build(model.operations()["CreateStudio"].input)
    assert paths(fields)[0] == "displayName"
    assert all(f.required for f in fields[:4])
