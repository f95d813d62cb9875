"""bench/report.py gathers whatever bench JSON exists into one markdown report with the machine's details."""

import importlib.util
import json
from pathlib import Path

BENCH_REPORT = Path(__file__).resolve().parents[2] / "bench" / "report.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_report", BENCH_REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_tables_every_bench_file_and_names_the_machine(tmp_path):
    (tmp_path / "ingest.json").write_text(json.dumps({"pages": 106, "elapsed_s": 12.5, "meta": {"dump": "sample"}}))
    (tmp_path / "retrieve.json").write_text(json.dumps({"rows": [{"mode": "dense", "p50_ms": 3.25}]}))
    (tmp_path / "serve.json").write_text("{not json")
    markdown = _module().build_report(tmp_path)
    assert "| cores |" in markdown and "| torch |" in markdown and "| gpu |" in markdown
    assert "| ingest | pages | 106 |" in markdown and "| ingest | meta.dump | sample |" in markdown
    assert "| dense | 3.25 |" in markdown
    assert "| serve | unreadable |" in markdown


def test_no_results_says_how_to_make_them(tmp_path):
    assert "make bench" in _module().build_report(tmp_path / "missing")
