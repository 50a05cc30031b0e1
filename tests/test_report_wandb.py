"""`embedlab-report --wandb`: the comparison table and figures logged offline to the sweep's W&B group, read back
from the run's own files (the .wandb record log, parsed with wandb's protobuf schema, and the logged table's JSON)
and compared row by row with the Markdown report."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sweeps import make_sweep

from embedlab.cli.report import main
from embedlab.report.runs import find_runs
from embedlab.report.wandb_log import sweep_group

BLOCK, HEADER = 32768, 7  # the .wandb file: LevelDB log blocks after a 7-byte ":W&B" header


def wandb_records(path: Path) -> Iterator:
    """The protobuf Records of an offline run's .wandb file (LevelDB log format: 7-byte chunk headers of crc32,
    length and type — full / first / middle / last — inside 32 KiB blocks, zero-padded at block ends)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # too little room for a chunk header: padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0:  # zero padding up to the block end
            pos += BLOCK - pos % BLOCK
            continue
        chunk, pos = data[pos + HEADER : pos + HEADER + length], pos + HEADER + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


def finished_records(path: Path, timeout: float = 60.0) -> list:
    """The records once the run's exit record is on disk (wandb's service may still be flushing after finish)."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(wandb_records(path)) if path.stat().st_size > HEADER else []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def markdown_rows(path: Path) -> list[list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]  # after header, rule


def _fmt(value, kind: str) -> str:
    """A number as the Markdown report prints it (the report's documented formats)."""
    if value is None:
        return "—"
    if kind == "diff":
        return f"{value:+.4f}"
    if kind == "p":
        return "< 0.0001" if value < 1e-4 else f"{value:.4f}"
    return f"{value:.4f}"


@pytest.mark.slow  # starts wandb's offline service (~10 s)
def test_report_logged_to_the_sweeps_group_with_the_markdown_rows(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    sweep = make_sweep(tmp_path / "multirun" / "focal")
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["seed=0,1,2"]}}}))
    out = tmp_path / "report"
    metrics = ["--metric", "ndcg_at_10", "--metric", "recall_at_10"]
    assert (
        main([str(sweep), "--baseline", "loss=infonce", *metrics, "--resamples", "500", "--out", str(out), "--wandb"])
        == 0
    )
    assert "W&B run (offline):" in capsys.readouterr().out

    (run_dir,) = (out / "wandb").glob("offline-run-*")
    (log_file,) = run_dir.glob("run-*.wandb")
    records = finished_records(log_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.run_group, run.job_type, run.project) == ("multirun/focal", "report", "embedlab")
    logged: dict = {}  # history items carry their key as a path: ["scifact_comparison", "_type"] -> value
    for item in (i for r in records if r.HasField("history") for i in r.history.item):
        *parents, leaf = list(item.nested_key) or [item.key]
        node = logged
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = json.loads(item.value_json)
    table_ref = logged["scifact_comparison"]
    assert table_ref["_type"] == "table-file"
    for name in ("bar", "vs_dim", "vs_precision"):
        assert logged[f"figures/scifact_ndcg_at_10_{name}"]["_type"] == "image-file", name

    table = json.loads((run_dir / "files" / table_ref["path"]).read_text())
    columns = table["columns"]
    md = markdown_rows(out / "scifact_comparison.md")
    assert len(md) == len(table["data"]) == 2
    for cells, values in zip(md, table["data"], strict=True):
        row = dict(zip(columns, values, strict=True))
        expected = [row["configuration"] + (" (baseline)" if row["baseline"] else ""), row["seeds"]]
        for m in ("ndcg_at_10", "recall_at_10"):
            expected += [f"{_fmt(row[f'{m}_mean'], 'mean')} ± {_fmt(row[f'{m}_std'], 'mean')}"]
            expected += [_fmt(row[f"{m}_diff"], "diff"), _fmt(row[f"{m}_p"], "p"), _fmt(row[f"{m}_p_holm"], "p")]
        expected.append(str(row["queries"]))
        assert cells == expected
    assert table["data"][1][columns.index("ndcg_at_10_p")] < 0.01  # the focal arm's real effect, logged as a number


def test_group_is_the_configs_logger_group_else_the_sweep_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    sweep = make_sweep(tmp_path / "multirun" / "s")
    runs = find_runs([sweep])
    assert sweep_group(runs, "fallback") == "fallback"  # no multirun.yaml: not a Hydra sweep folder
    (sweep / "multirun.yaml").write_text("{}")
    assert sweep_group(runs, "fallback") == "multirun/s"  # as `embedlab-train -m` names the group (cwd-relative)
    for run in runs:
        config = yaml.safe_load((run.path / "config.yaml").read_text())
        config["logger"] = {"kind": "wandb", "group": "focal-ablation"}
        (run.path / "config.yaml").write_text(yaml.safe_dump(config))
    assert sweep_group(runs, "fallback") == "focal-ablation"
