"""The JSON that users read (API ``to_dict()`` and the CLI's ``--json`` report) against the schema
that ships in the package."""

from __future__ import annotations

import json

import jsonschema
import pytest

from stylefusion.cli import main as cli_main
from stylefusion.results import SCHEMA_VERSION, result_schema


def _validator(document: str) -> jsonschema.protocols.Validator:
    schema = result_schema(document)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_api_result_validates(carphone_result):
    doc = carphone_result.to_dict()
    assert doc["schema_version"] == SCHEMA_VERSION
    _validator("result").validate(doc)


def test_cli_report_validates_and_matches_the_api(tiny_ckpt, carphone, carphone_result, tmp_path):
    missing = tmp_path / "missing.mp4"
    out = tmp_path / "out.json"
    assert cli_main(["detect", str(carphone), str(missing), "--model", str(tiny_ckpt), "--json", str(out),
                     "--quiet", "--precision", "fp32"]) == 1  # one file failed; fp32 as carphone_result
    report = json.loads(out.read_text())
    _validator("report").validate(report)
    ok, failed = report["results"]
    assert failed["label"] == "error" and str(missing) in failed["error"]
    assert ok["frames"] == carphone_result.to_dict()["frames"]


@pytest.mark.parametrize("change", [
    lambda d: d.update(label="maybe"),
    lambda d: d.update(schema_version=SCHEMA_VERSION + 1),
    lambda d: d["frames"][0].update(box=[1, 2, 3]),
    lambda d: d.pop("p_fake"),
    lambda d: d.update(extra_field=1),
], ids=["unknown-label", "other-version", "short-box", "no-p_fake", "extra-field"])
def test_schema_rejects_what_it_should(carphone_result, change):
    doc = json.loads(json.dumps(carphone_result.to_dict()))
    change(doc)
    with pytest.raises(jsonschema.ValidationError):
        _validator("result").validate(doc)
