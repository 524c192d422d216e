"""Tables printed into a pipe (a log, CI) keep their cells whole."""

from __future__ import annotations

from rich.table import Table

from medcls.utils.console import print_table


def _wide_table() -> Table:
    table = Table(title="study")
    for i in range(12):
        table.add_column(f"Accuracy (ensemble) {i}")
    table.add_row(*[f"0.{5000 + i} ± 0.0{i}32" for i in range(12)])
    return table


def test_piped_wide_table_is_printed_in_full(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    print_table(_wide_table())
    out = capsys.readouterr().out
    assert "…" not in out
    assert "Accuracy (ensemble) 11" in out and "0.5011 ± 0.01132" in out


def test_columns_env_still_decides(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    print_table(_wide_table())
    assert "…" in capsys.readouterr().out
