"""ddtse.report: the RESULTS.md table (selection columns as percentages) and load_row."""
import json

from ddtse.report import load_row, results_table


def test_results_table_confusion_and_acceptance_percent(tmp_path):
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "summary.json").write_text(json.dumps({
        "si_sdr": {"mean": 12.345}, "si_sdri": {"mean": 10.0}, "pesq": {"mean": 2.5}, "estoi": {"mean": 0.81},
        "selected": {"mean": 0.75}, "confusion": {"mean": 0.125}, "accepted": {"mean": 0.875}, "n_items": 8}))
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text(json.dumps({"si_sdr": {"mean": 1.0}, "n_items": 2}))  # scored before
    table = results_table([load_row("sys", scores), load_row("old", old), load_row("gone", tmp_path / "nope")])
    header, rule, sys_row, old_row, gone_row = table.strip().splitlines()
    columns = [c.strip() for c in header.split("|")[1:-1]]
    assert columns == ["system", "SI-SDR (dB)", "SI-SDRi (dB)", "PESQ", "ESTOI", "NFE", "RTF", "selected (%)",
                       "confusion (%)", "accepted (%)", "items", "note"]
    assert rule.count("---") == len(columns)
    cells = dict(zip(columns, (c.strip() for c in sys_row.split("|")[1:-1])))
    assert cells["selected (%)"] == "75.0" and cells["confusion (%)"] == "12.5"
    assert cells["accepted (%)"] == "87.5" and cells["items"] == "8"
    assert cells["SI-SDR (dB)"] == "12.35" and cells["NFE"] == "–"
    old_cells = dict(zip(columns, (c.strip() for c in old_row.split("|")[1:-1])))
    assert old_cells["confusion (%)"] == "–" and old_cells["accepted (%)"] == "–"
    assert gone_row.rstrip(" |").endswith("not run")


def test_optional_columns_appear_only_when_scored(tmp_path):
    scores = tmp_path / "s"
    scores.mkdir()
    (scores / "summary.json").write_text(json.dumps({"si_sdr": {"mean": 3.0}, "dnsmos_ovrl": {"mean": 2.345},
                                                     "n_items": 4}))
    plain = tmp_path / "p"
    plain.mkdir()
    (plain / "summary.json").write_text(json.dumps({"si_sdr": {"mean": 1.0}, "n_items": 4}))
    header, rule, with_row, plain_row = results_table([load_row("a", scores), load_row("b", plain)]).strip().splitlines()
    columns = [c.strip() for c in header.split("|")[1:-1]]
    assert "DNSMOS OVRL" in columns and "energy re mixture, target absent (dB)" not in columns
    assert rule.count("---") == len(columns)
    cells = dict(zip(columns, (c.strip() for c in with_row.split("|")[1:-1])))
    assert cells["DNSMOS OVRL"] == "2.35" and cells["NFE"] == "–"
    assert dict(zip(columns, (c.strip() for c in plain_row.split("|")[1:-1])))["DNSMOS OVRL"] == "–"
    assert "DNSMOS" not in results_table([load_row("b", plain)])
