"""The command line (SPEC section 7): ``python -m sparsetconv {shape,explain,bench}``.

Sizes are checked against SPEC section 2's formulas written out here; argument errors
must give exit status 2 and exactly one line on stderr, with no traceback.
"""

import contextlib
import importlib.util
import io
import re
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import conv_size, transposed_size
from sparsetconv.__main__ import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_main(argv):
    """``(status, stdout, stderr)`` of ``main(argv)``; SystemExit counts as a status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


def run_module(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "sparsetconv", *args],
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(status, stderr):
    assert status == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("sparsetconv: error:"), stderr
    assert len(lines[0]) > len("sparsetconv: error:") + 3  # says something


# ---------------------------------------------------------------------------
# explain

def test_explain_seed_000(capsys):
    status = main(["explain", "--input", "2", "2", "--kernel", "2", "--stride", "2",
                   "--padding", "1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert err == ""
    assert transposed_size(2, 2, 2, 1, 1, 0, 1) == 2
    assert "(2 - 1)*2 - 2*1 + 1*(2 - 1) + 0 + 1 = 2" in out
    assert re.search(r"\b2x2\b", out)
    amounts = [line for line in out.splitlines() if "dilation*(kernel - 1) - padding" in line]
    assert amounts and all(line.rstrip().endswith("= 0") for line in amounts), out
    assert "dilation=1" in out
    assert "output_padding" in out


def test_explain_negative_amount(capsys):
    status = main(["explain", "--input", "4", "--kernel", "3", "--stride", "2",
                   "--padding", "3"])
    out, err = capsys.readouterr()
    assert status == 0, err
    amounts = [line for line in out.splitlines() if "dilation*(kernel - 1) - padding" in line]
    assert any(line.rstrip().endswith("= -1") for line in amounts), out
    assert "crop" in out.lower()
    assert f"= {transposed_size(4, 3, 2, 3, 3, 0, 1)}" in out


@pytest.mark.parametrize("extra, rank", [
    (["--input", "2", "2", "--kernel", "2", "--stride", "2", "--padding", "1"], 2),
    (["--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1",
      "--output-padding", "1"], 1),
    (["--input", "2", "3", "--kernel", "2", "3", "--stride", "2", "1",
      "--padding", "1:0", "0:2"], 2),
    (["--input", "4", "--kernel", "3", "--stride", "2", "--padding", "same"], 1),
], ids=["seed-000", "1d-output-padding", "2d-pairs", "1d-same"])
def test_explain_plot_writes_png(tmp_path, extra, rank):
    pytest.importorskip("matplotlib")
    path = tmp_path / "buffers.png"
    status, out, err = run_main(["explain", *extra, "--plot", str(path)])
    assert status == 0, err
    assert "Traceback" not in err
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 2000
    assert str(path) in out


def test_explain_plot_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    path = tmp_path / "never.png"
    status, out, err = run_main(["explain", "--input", "2", "--kernel", "2",
                                 "--plot", str(path)])
    assert_one_line_error(status, err)
    assert "sparsetconv[plot]" in err
    assert not path.exists()
    assert "(2 - 1)*1 - 2*0 + 1*(2 - 1) + 0 + 1 = 3" in out  # the text still came


# ---------------------------------------------------------------------------
# shape

def test_shape_seed_001(capsys):
    status = main(["shape", "--input", "12", "16", "12", "--kernel", "3", "--stride", "2",
                   "--padding", "1", "--output-padding", "1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    expected = tuple(transposed_size(n, 3, 2, 1, 1, 1, 1) for n in (12, 16, 12))
    assert expected == (24, 32, 24)
    assert re.search(r"\b24x32x24\b", out.splitlines()[0]), out
    # ... and the explanation with it.
    assert "(12 - 1)*2 - 2*1 + 1*(3 - 1) + 1 + 1 = 24" in out
    assert "(16 - 1)*2 - 2*1 + 1*(3 - 1) + 1 + 1 = 32" in out


def test_shape_target_gives_output_padding(capsys):
    status = main(["shape", "--input", "12", "16", "12", "--kernel", "3", "--stride", "2",
                   "--padding", "1", "--target", "24", "32", "24"])
    out, err = capsys.readouterr()
    assert status == 0, err
    base = [transposed_size(n, 3, 2, 1, 1, 0, 1) for n in (12, 16, 12)]
    assert [t - b for t, b in zip((24, 32, 24), base)] == [1, 1, 1]
    assert "(1, 1, 1)" in out


def test_shape_target_per_axis(capsys):
    status = main(["shape", "--input", "12", "16", "--kernel", "3", "--stride", "2",
                   "--padding", "1", "--target", "23", "32"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "(0, 1)" in out


def test_shape_unreachable_target(capsys):
    # Reachable: 23 or 24 (output_padding 0 or 1).
    assert transposed_size(12, 3, 2, 1, 1, 0, 1) == 23
    for target in ("30", "22"):
        status = main(["shape", "--input", "12", "--kernel", "3", "--stride", "2",
                       "--padding", "1", "--target", target])
        out, err = capsys.readouterr()
        assert_one_line_error(status, err)
        assert out == ""


def test_shape_conv_seed_000(capsys):
    status = main(["shape", "--input", "28", "28", "--kernel", "5", "--stride", "2",
                   "--conv"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert conv_size(28, 5, 2, 0, 0, 1) == 12
    assert re.search(r"\b12x12\b", out)
    # ... while the transposed convolution with the same parameters gives 27.
    status = main(["shape", "--input", "12", "12", "--kernel", "5", "--stride", "2"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert re.search(r"\b27x27\b", out.splitlines()[0])


def test_shape_conv_same(capsys):
    status = main(["shape", "--input", "28", "27", "--kernel", "5", "--stride", "2",
                   "--padding", "same", "--conv"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert re.search(r"\b14x14\b", out)  # ceil(28/2), ceil(27/2)


@pytest.mark.parametrize("argv, expected", [
    (["--input", "5", "--kernel", "3", "--padding", "1:2"],
     (transposed_size(5, 3, 1, 1, 2, 0, 1),)),
    (["--input", "5", "6", "--kernel", "3", "--stride", "2", "--padding", "1:2", "0:1"],
     (transposed_size(5, 3, 2, 1, 2, 0, 1), transposed_size(6, 3, 2, 0, 1, 0, 1))),
    (["--input", "5", "6", "--kernel", "3", "--stride", "2", "--padding", "1", "2"],
     (transposed_size(5, 3, 2, 1, 1, 0, 1), transposed_size(6, 3, 2, 2, 2, 0, 1))),
    (["--input", "5", "6", "--kernel", "3", "--stride", "2", "--padding", "same"],
     (10, 12)),
    (["--input", "5", "--kernel", "4", "--padding", "same"], (5,)),
    (["--input", "5", "--kernel", "3", "--stride", "2", "--padding", "valid"],
     (transposed_size(5, 3, 2, 0, 0, 0, 1),)),
    (["--input", "4", "--kernel", "3", "--dilation", "2", "--output-padding", "1"],
     (transposed_size(4, 3, 1, 0, 0, 1, 2),)),
], ids=["1d-pair", "2d-pairs", "2d-ints", "2d-same", "1d-same", "valid", "dilation"])
def test_shape_padding_forms(argv, expected):
    status, out, err = run_main(["shape", *argv])
    assert status == 0, err
    first = out.splitlines()[0]
    assert re.search(rf"(?<![\dx]){'x'.join(map(str, expected))}(?![\dx])", first), out


@settings(max_examples=40, deadline=None)
@given(rank=st.integers(1, 3), data=st.data())
def test_shape_matches_the_formula(rank, data):
    axes = lambda lo, hi: [data.draw(st.integers(lo, hi)) for _ in range(rank)]  # noqa: E731
    n, k, s, d = axes(1, 9), axes(1, 4), axes(1, 3), axes(1, 3)
    pairs = [(data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))) for _ in range(rank)]
    op = [data.draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d)]
    sizes = [transposed_size(*a) for a in zip(n, k, s, [p[0] for p in pairs],
                                               [p[1] for p in pairs], op, d)]
    argv = ["shape", "--input", *map(str, n), "--kernel", *map(str, k),
            "--stride", *map(str, s), "--dilation", *map(str, d),
            "--padding", *(f"{b}:{e}" for b, e in pairs), "--output-padding", *map(str, op)]
    status, out, err = run_main(argv)
    if min(sizes) < 1:
        assert_one_line_error(status, err)
        return
    assert status == 0, err
    assert out.splitlines()[0].endswith(" " + "x".join(map(str, sizes))), out


# ---------------------------------------------------------------------------
# bench

def bench_rows(out):
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(auto|direct|sparse|torch)\s+(\S+)", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


@pytest.mark.parametrize("layer", [
    ["--input", "1", "2", "4", "4", "--out-channels", "3", "--kernel", "2",
     "--stride", "2", "--padding", "1"],
    ["--input", "2", "2", "6", "--out-channels", "4", "--kernel", "3", "--stride", "2",
     "--groups", "2", "--dtype", "float64"],
], ids=["2d", "1d-groups"])
def test_bench_tiny_layer(capsys, layer):
    status = main(["bench", *layer, "--repeat", "2"])
    out, err = capsys.readouterr()
    assert status == 0, err
    rows = bench_rows(out)
    expected = {"auto", "direct", "sparse"}
    if importlib.util.find_spec("torch") is not None:
        expected.add("torch")
    assert set(rows) == expected, out
    for name, value in rows.items():
        assert float(value) >= 0.0, (name, out)


# ---------------------------------------------------------------------------
# Argument errors: status 2, one line, no traceback.

BAD_ARGUMENTS = {
    "missing-input": ["shape", "--kernel", "2"],
    "missing-input-explain": ["explain", "--kernel", "2", "--stride", "2"],
    "missing-everything": ["shape"],
    "no-subcommand": [],
    "unknown-subcommand": ["frobnicate", "--input", "4"],
    "unknown-option": ["shape", "--input", "4", "--kernel", "2", "--bogus"],
    "stride-0": ["shape", "--input", "4", "--kernel", "2", "--stride", "0"],
    "stride-0-explain": ["explain", "--input", "4", "--kernel", "2", "--stride", "0"],
    "stride-negative": ["explain", "--input", "4", "--kernel", "2", "--stride", "-1"],
    "kernel-0": ["shape", "--input", "4", "--kernel", "0"],
    "dilation-0": ["shape", "--input", "4", "--kernel", "2", "--dilation", "0"],
    "input-0": ["shape", "--input", "0", "--kernel", "2"],
    "padding-x": ["shape", "--input", "4", "--kernel", "2", "--padding", "x"],
    "padding-pair-x": ["shape", "--input", "4", "--kernel", "2", "--padding", "1:x"],
    "padding-explain-x": ["explain", "--input", "4", "--kernel", "2", "--padding", "x"],
    "padding-crops-all": ["shape", "--input", "2", "--kernel", "2", "--padding", "9"],
    "output-padding-5": ["shape", "--input", "4", "--kernel", "3", "--stride", "2",
                         "--output-padding", "5"],
    "output-padding-5-explain": ["explain", "--input", "4", "--kernel", "3", "--stride",
                                 "2", "--output-padding", "5"],
    "input-float": ["shape", "--input", "2.5", "--kernel", "2"],
    "kernel-float": ["shape", "--input", "4", "--kernel", "2.0"],
    "stride-word": ["explain", "--input", "4", "--kernel", "2", "--stride", "two"],
    "four-axes": ["shape", "--input", "1", "2", "3", "4", "--kernel", "2"],
    "kernel-rank": ["shape", "--input", "4", "4", "--kernel", "2", "2", "2"],
    "target-rank": ["shape", "--input", "4", "--kernel", "2", "--target", "3", "3"],
    "bench-missing-out-channels": ["bench", "--input", "1", "1", "4", "--kernel", "2"],
    "bench-no-spatial": ["bench", "--input", "1", "1", "--out-channels", "2",
                         "--kernel", "2"],
    "bench-padding-x": ["bench", "--input", "1", "1", "4", "--out-channels", "2",
                        "--kernel", "2", "--padding", "x"],
    "bench-stride-0": ["bench", "--input", "1", "1", "4", "--out-channels", "2",
                       "--kernel", "2", "--stride", "0", "--repeat", "1"],
    "bench-output-padding-5": ["bench", "--input", "1", "1", "4", "--out-channels", "2",
                               "--kernel", "2", "--stride", "2", "--output-padding", "5",
                               "--repeat", "1"],
    "bench-groups-0": ["bench", "--input", "1", "1", "4", "--out-channels", "2",
                       "--kernel", "2", "--groups", "0", "--repeat", "1"],
    "bench-groups-not-dividing": ["bench", "--input", "1", "3", "4", "--out-channels", "2",
                                  "--kernel", "2", "--groups", "2", "--repeat", "1"],
    "bench-out-channels-0": ["bench", "--input", "1", "1", "4", "--out-channels", "0",
                             "--kernel", "2", "--repeat", "1"],
    "bench-threads-0": ["bench", "--input", "1", "1", "4", "--out-channels", "2",
                        "--kernel", "2", "--threads", "0", "--repeat", "1"],
    "bench-repeat-0": ["bench", "--input", "1", "1", "4", "--out-channels", "2",
                       "--kernel", "2", "--repeat", "0"],
}


@pytest.mark.parametrize("argv", list(BAD_ARGUMENTS.values()), ids=list(BAD_ARGUMENTS))
def test_bad_arguments_one_line_status_2(argv):
    status, out, err = run_main(argv)
    assert_one_line_error(status, err)


@pytest.mark.parametrize("name", ["missing-input", "unknown-subcommand", "stride-0",
                                  "padding-x", "output-padding-5", "input-float",
                                  "bench-stride-0"])
def test_bad_arguments_in_a_real_process(name):
    result = run_module(*BAD_ARGUMENTS[name])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sparsetconv: error:")


@pytest.mark.parametrize("argv", [["--help"], ["shape", "--help"], ["explain", "--help"],
                                  ["bench", "--help"]])
def test_help_exits_0(argv):
    status, out, err = run_main(argv)
    assert status in (0, None), err
    assert "usage" in out.lower()
    assert err == ""
    if argv == ["--help"]:
        for command in ("shape", "explain", "bench"):
            assert command in out
    else:
        assert "--input" in out


def test_help_in_a_real_process():
    result = run_module("--help")
    assert result.returncode == 0, result.stderr
    assert "shape" in result.stdout and "explain" in result.stdout
    assert result.stderr == ""


def test_module_shape_in_a_real_process():
    result = run_module("shape", "--input", "4", "--kernel", "2", "--stride", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(" 8")  # (4 - 1)*2 + 1 + 1


def test_console_script():
    script = shutil.which("sparsetconv")
    if script is None:
        pytest.skip("the sparsetconv console script is not on PATH")
    result = subprocess.run([script, "shape", "--input", "4", "--kernel", "2",
                             "--stride", "2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(" " + str(transposed_size(4, 2, 2, 0, 0, 0, 1)))
    bad = subprocess.run([script, "shape", "--input", "4", "--kernel", "2", "--stride", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr
