"""What a new user sees first: the terminal at 80 columns, --quiet, and report.html's structure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the runs use onnxruntime-cpu")

ROOT = Path(__file__).resolve().parents[1]
MATRIX = """[matrix]
ops = ["AveragePool", "MaxPool", "GlobalAveragePool"]
kernel = [2, 3]
stride = 3
input_size = 7
ceil_mode = [false, true]
"""
#: Long names on purpose: the table must show them whole at 80 columns.
BACKENDS = "onnxruntime-cpu,onnx-reference,onnxruntime-cpu-noopt"


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX)
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "poolconform", "run", "--matrix", str(matrix), "--backends",
                           BACKENDS, "--out", str(tmp_path / "out"), *extra],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def at_80(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    tmp = tmp_path_factory.mktemp("first-hour")
    return _run(tmp), tmp / "out"


def test_terminal_fits_80_columns_with_every_backend_name_whole(at_80) -> None:
    proc, _ = at_80
    assert proc.returncode == 1, proc.stderr  # onnx-reference disagrees on the ceil AveragePool case
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    for name in BACKENDS.split(","):
        assert any(re.match(rf"\s*{re.escape(name)}\s", line) for line in lines), name  # a row starts with it
    assert "…" not in proc.stdout  # nothing cut
    assert lines[0] == "poolconform run: 9 cases, 27 records"  # the counts once
    assert lines[-1] == "verdict: 1 unexpected disagreement(s): exit 1"


def test_findings_commands_paste_as_one_command(at_80) -> None:
    proc, _ = at_80
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("poolconform explain"))
    command = ""
    for line in lines[start:]:
        command += line.strip().removesuffix("\\")
        if not line.endswith("\\"):
            break
    assert command.split() == ["poolconform", "explain", "AveragePool-1d-k3-s3-p0-ceil-f32-n4", "--backends",
                               "onnx-reference"]


def test_unavailable_backends_are_named_once(tmp_path) -> None:
    matrix = tmp_path / "m.toml"
    matrix.write_text("[matrix]\nops = ['MaxPool']\nkernel = 2\nstride = 2\ninput_size = 4\n")
    proc = subprocess.run([sys.executable, "-m", "poolconform", "run", "--matrix", str(matrix), "--backends",
                           "onnxruntime-cpu,onnxruntime-cuda", "--out", str(tmp_path / "o")],
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
    try:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            pytest.skip("CUDA is available here: onnxruntime-cuda runs")
    except ImportError:
        pass
    assert proc.returncode == 0, proc.stderr
    both = proc.stdout + proc.stderr
    assert both.count("onnxruntime-cuda") == 1 and "not run: onnxruntime-cuda:" in proc.stdout


def test_quiet_prints_the_verdict_line_only(tmp_path) -> None:
    proc = _run(tmp_path, "--quiet")
    assert proc.returncode == 1
    assert proc.stdout == "verdict: 1 unexpected disagreement(s): exit 1\n"
    assert proc.stderr == ""


def test_html_leads_with_verdict_and_findings_and_draws_svg(at_80) -> None:
    _, out = at_80
    html = (out / "report.html").read_text()
    assert "data:image/png" not in html and "<img" not in html
    body = html[html.index("<body>"):]
    assert body.index('class="verdict fail"') < body.index('<h2 id="findings">') < body.index("<svg")
    assert body.index('<h2 id="findings">') == body.index("<h2")  # the first section
    assert "FAIL: 1 unexpected disagreement(s)" in body
    panels = re.findall(r'<svg class="grid".*?</svg>', html, re.S)
    assert len(panels) == 2 * 3 + 1  # AveragePool and MaxPool per backend, one for the global op
    # onnx-reference's k3 s3 AveragePool cell: 1 of 2 records pass, half-filled, with a mismatch marker
    ref_avg = next(p for p in panels if 'aria-label="onnx-reference"' in p and ">1/2<" in p)
    from poolconform.report.html import STATUS_COLORS, pass_fill

    cell = re.search(r"<title>3 / 3: [^<]*</title><rect [^>]*fill=\"(#[0-9a-f]{6})\"/><path [^>]*fill=\"(#[0-9a-f]{6})\"",
                     ref_avg)
    assert cell and cell.groups() == (pass_fill(0.5), STATUS_COLORS["mismatch"])
    assert 'aria-label="error as a fraction of the tolerance"' in html
    assert len(html.encode()) < 60_000


def test_html_tables_scroll_and_expected_text_is_dark() -> None:
    from poolconform.report.html import TEXT_COLORS, render_html
    from poolconform.report.summary import summarize
    from poolconform.results import make_record

    records = [make_record("MaxPool-2d-k2-s2-p0-f32-n4", "b", "mismatch", detail="d", expected=True,
                           expected_reason="known")]
    html = render_html(records, summarize(records))
    assert html.count('<div class="scroll"><table>') >= 2
    assert TEXT_COLORS["expected"] in html  # a dark amber, not the fill colour, for text on white
    r, g, b = (int(TEXT_COLORS["expected"][i:i + 2], 16) for i in (1, 3, 5))
    assert 0.2126 * r + 0.7152 * g + 0.0722 * b < 110  # luminance low enough for text on white
