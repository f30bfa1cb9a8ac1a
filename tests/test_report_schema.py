"""The published JSON Schema (reports/report.schema.json) and the typed report model it is generated from.

The committed file must be what `python -m dpo_doctor.report_model` prints today, and what the real writers produce
(a scan of a tiny model with generation probes, a data audit, a compare report) must load through the model with
every key they write named in the schema: a field added to a writer but not to the model fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dpo_doctor import report as rep
from dpo_doctor.errors import UserError
from dpo_doctor.report_model import schema_text

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "reports" / "report.schema.json"


def unnamed_keys(value, schema: dict, defs: dict, where: str = "") -> list[str]:
    """Keys of `value` the schema does not name (resolving $ref, anyOf and maps); [] when it names them all."""
    if "$ref" in schema:
        return unnamed_keys(value, defs[schema["$ref"].rsplit("/", 1)[-1]], defs, where)
    if "anyOf" in schema:
        tries = [unnamed_keys(value, s, defs, where) for s in schema["anyOf"] if _fits(value, s, defs)]
        return min(tries, key=len) if tries else [f"{where or 'the top level'}: fits no alternative"]
    out = []
    if isinstance(value, dict) and "properties" in schema:
        for k, v in value.items():
            if k not in schema["properties"]:
                out.append(f"{where}.{k}" if where else k)
            else:
                out += unnamed_keys(v, schema["properties"][k], defs, f"{where}.{k}" if where else k)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for k, v in value.items():
            out += unnamed_keys(v, schema["additionalProperties"], defs, f"{where}[{k!r}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            out += unnamed_keys(v, schema["items"], defs, f"{where}[{i}]")
    return out


def _fits(value, schema: dict, defs: dict) -> bool:
    """A shallow match of one anyOf alternative: its JSON type, and for an object its `kind` constant if it has one."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    kind = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value))
    kind = kind or ("integer" if isinstance(value, int) else "number")
    if schema.get("type") not in (None, kind) and not (kind == "integer" and schema.get("type") == "number"):
        return False
    want = (schema.get("properties") or {}).get("kind", {})
    allowed = want.get("enum") or ([want["const"]] if "const" in want else None)
    return not (isinstance(value, dict) and allowed and value.get("kind", want.get("default")) not in allowed)


def check_against_committed_schema(report_dir: Path) -> None:
    raw = json.loads((report_dir / "report.json").read_text())
    rep.load_report(report_dir)  # the typed model accepts it (strict)
    schema = json.loads(SCHEMA_FILE.read_text())
    assert unnamed_keys(raw, schema, schema["$defs"]) == []
    try:
        import jsonschema
    except ModuleNotFoundError:  # not a dependency: the model above is what the schema is generated from
        return
    jsonschema.validate(raw, schema)


def test_committed_schema_is_the_generated_one():
    import pydantic

    made_with = json.loads(SCHEMA_FILE.read_text())["$comment"].rsplit(" ", 1)[-1]
    if made_with != ".".join(pydantic.VERSION.split(".")[:2]):  # another pydantic may word the same schema apart
        pytest.skip(f"reports/report.schema.json was generated with pydantic {made_with}, this is {pydantic.VERSION}")
    assert SCHEMA_FILE.read_text() == schema_text(), \
        "reports/report.schema.json is stale: python -m dpo_doctor.report_model > reports/report.schema.json"


def test_schema_command_prints_it():
    done = subprocess.run([sys.executable, "-m", "dpo_doctor.report_model"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout == SCHEMA_FILE.read_text()
    schema = json.loads(done.stdout)
    kinds = {d["properties"]["kind"].get("const") or tuple(d["properties"]["kind"].get("enum", ()))
             for d in (schema["$defs"][r["$ref"].rsplit("/", 1)[-1]] for r in schema["anyOf"])}
    assert kinds == {"scan", "data_audit", "compare"} or kinds == {("scan",), ("data_audit",), ("compare",)}


def test_a_real_scan_report_fits_the_schema(tmp_path, tiny_dir, pairs_jsonl):
    from dpo_doctor.scan.pipeline import ScanConfig, scan
    from tests.test_scan import make_run

    run = make_run(tmp_path / "run", tiny_dir, steps=(3,))
    out = scan(ScanConfig(run_dir=run, data=pairs_jsonl, ref=tiny_dir, out=tmp_path / "rep", render=False,
                          cache_dir=tmp_path / "cache", max_prompts=3, samples_per_prompt=2, max_new_tokens=6))
    check_against_committed_schema(out)
    doc = rep.load_report(out).doc
    assert doc.kind == "scan" and doc.run.beta > 0 and doc.checkpoints[0].metrics["gen/kl_mean"] >= 0
    assert doc.timings is not None and doc.timings.total_s > 0 and doc.verdict_record is not None


def test_data_audit_and_compare_reports_fit_the_schema(tmp_path, pairs_jsonl):
    from dpo_doctor.audit.pipeline import AuditConfig, run_audit
    from tests.fixtures.compare_fixture import write_fixture_compare

    audit = run_audit(AuditConfig(data=pairs_jsonl, out=tmp_path / "audit"))
    check_against_committed_schema(audit)
    assert rep.load_report(audit).doc.audit.filter.file == "filter_ids.jsonl"
    compared = write_fixture_compare(tmp_path / "cmp")
    check_against_committed_schema(compared)
    assert rep.load_report(compared).doc.runs[0].checkpoints[0].step > 0


def test_a_field_the_model_lacks_is_caught_by_the_key_walk():
    schema = json.loads(SCHEMA_FILE.read_text())
    doc = {"schema_version": 1, "run": {"name": "r", "beta": 0.1, "surprise": 1}, "checkpoints": []}
    assert unnamed_keys(doc, schema, schema["$defs"]) == ["run.surprise"]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["checkpoints"][0].pop("name"), r"checkpoints\[0\]\.name is missing"),
    (lambda d: d["checkpoints"][0].update(step=2.0),
     r"checkpoints\[0\]\.step is a number \(2\.0\), expected an integer"),
    (lambda d: d["checkpoints"][0]["metrics"].update({"rewards/margins": "x"}),
     r'checkpoints\[0\]\.metrics\["rewards/margins"\] is a string \(\'x\'\), expected a number or null'),
    (lambda d: d["data"].update(n_pairs=True), r"data\.n_pairs is a boolean \(True\), expected an integer"),
    (lambda d: d["diagnoses"][0].update(severity="fatal"),
     r"diagnoses\[0\]\.severity is a string \('fatal'\), expected 'info' or 'warning' or 'error'"),
    (lambda d: d["diagnoses"][0]["recommendation"].pop("text"), r"diagnoses\[0\]\.recommendation\.text is missing"),
    (lambda d: d.update(timings={"total_s": "1", "stages": {}}),
     r"timings\.total_s is a string \('1'\), expected a number"),
    (lambda d: d["run"].update(beta=None), r"run\.beta is null \(None\), expected a number"),
])
def test_wrong_fields_fail_in_one_line_naming_the_path(tmp_path, edit, message):
    from tests.fixtures.report_fixture import write_fixture_report

    out = write_fixture_report(tmp_path / "rep")
    doc = json.loads((out / "report.json").read_text())
    edit(doc)
    (out / "report.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=message) as err:
        rep.load_report(out)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(out / "report.json") + ": ")
    assert str(err.value).endswith("the file was edited or written by another tool. Re-run the scan")


def test_an_older_report_without_optional_fields_still_loads(tmp_path):
    """schema_version 1 as the first scans wrote it: no tool, timings, verdict_record, data_format, per_prompt."""
    (tmp_path / "report.json").write_text(json.dumps({
        "schema_version": 1, "run": {"name": "old", "beta": 0.1}, "checkpoints": [{"name": "checkpoint-1", "step": 1}],
        "diagnoses": [{"code": "DPO101", "name": "length-exploitation", "kind": "length_exploitation",
                       "severity": "warning", "message": "m", "recommendation": {"text": "t"}}]}))
    doc = rep.load_report(tmp_path).doc
    assert doc.verdict == "no-failure-found" and doc.tool.version == "?" and doc.checkpoints[0].metrics == {}
    assert doc.diagnoses[0].evidence == {} and doc.diagnoses[0].checkpoint is None and doc.data is None
