"""The command line: ``python -m sparsetconv {shape,explain,bench}``.

Sizes are checked against the output-size formulas written out here; argument errors
must give exit status 2 and exactly one line on stderr, with no traceback.
"""

import contextlib
import math
import importlib.util
import io
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import SEED_003_OUT, conv_configs, conv_size, transposed_size
from reference import conv_transpose_reference
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
    assert out == ""              # refused before anything was printed


def test_explain_terms_seed_003(capsys):
    """How the 6 at (0, 0) and the 12 at (0, 1) come about, term by term."""
    status = main(["explain", "--input", "4", "4", "--kernel", "4", "--stride", "2",
                   "--padding", "1", "--terms", "0", "0", "--terms", "0", "1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    lines = out.splitlines()
    start = lines.index("The terms that sum to each output (input ones, kernel 1..16 "
                        "row-major):")
    assert lines[start + 1:start + 5] == [
        "output[0, 0] = 6 = input[0, 0]*kernel[1, 1]",
        "                 = 1*6",
        "output[0, 1] = 12 = input[0, 0]*kernel[1, 2] + input[0, 1]*kernel[1, 0]",
        "                  = 1*7 + 1*5",
    ]
    assert SEED_003_OUT[0, 0] == 6 and SEED_003_OUT[0, 1] == 12


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_explain_terms_sum_to_the_output(data):
    rank = data.draw(st.integers(1, 2))
    cfg = data.draw(conv_configs(rank, transposed=True, padding_kinds=("int", "ints", "pairs")))
    rng = np.random.default_rng(cfg.seed)
    x = rng.integers(-3, 4, cfg.in_size)
    w = rng.integers(-3, 4, cfg.kernel)
    index = tuple(data.draw(st.integers(0, o - 1)) for o in cfg.out_size)
    kw = dict(stride=cfg.stride, padding=cfg.padding, output_padding=cfg.output_padding,
              dilation=cfg.dilation)
    per_axis = lambda v: [str(a) for a in (v if isinstance(v, tuple) else (v,) * rank)]  # noqa: E731
    argv = ["explain", "--input", *map(str, cfg.in_size), "--kernel", *map(str, cfg.kernel),
            "--stride", *per_axis(cfg.stride), "--dilation", *per_axis(cfg.dilation),
            "--output-padding", *per_axis(cfg.output_padding),
            "--padding", *(f"{b}:{e}" for b, e in cfg.pairs),
            "--input-values", *map(str, x.ravel()), "--kernel-values", *map(str, w.ravel()),
            "--terms", *map(str, index)]
    status, out, err = run_main(argv)
    assert status == 0, err
    expected = conv_transpose_reference(x[None, None].astype(float), w[None, None].astype(float),
                                        None, cfg.stride, cfg.pairs, cfg.output_padding, 1,
                                        cfg.dilation)[0, 0][index]
    head = f"output[{', '.join(map(str, index))}] = "
    line, = [line for line in out.splitlines() if line.startswith(head)]
    assert float(line[len(head):].split()[0].rstrip(":")) == expected
    terms = stc.output_terms(x, w, index, **kw)
    if terms:
        products = out.splitlines()[out.splitlines().index(line) + 1].split("= ", 1)[1]
        assert products == " + ".join(f"{v:g}*{k:g}" for _, _, v, k in terms)
    else:
        assert "no input element reaches it" in line


@pytest.mark.parametrize("path_name, frames", [("steps.png", None), ("steps.gif", 5)])
def test_explain_zero_stuffed_picture(tmp_path, path_name, frames):
    pytest.importorskip("matplotlib")
    path = tmp_path / path_name
    status, out, err = run_main(["explain", "--input", "3", "--kernel", "3", "--stride", "2",
                                 "--padding", "1", "--zero-stuffed", str(path)])
    assert status == 0, err
    assert f"wrote {path}" in out
    from PIL import Image
    with Image.open(path) as image:
        if frames is None:
            assert image.format == "PNG"
        else:
            assert image.format == "GIF" and image.n_frames == frames == math.prod(
                stc.conv_transpose_output_size(3, 3, stride=2, padding=1))


# ---------------------------------------------------------------------------
# shape

def test_shape_seed_001(capsys):
    argv = ["shape", "--input", "12", "16", "12", "--kernel", "3", "--stride", "2",
            "--padding", "1", "--output-padding", "1"]
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    expected = tuple(transposed_size(n, 3, 2, 1, 1, 1, 1) for n in (12, 16, 12))
    assert expected == (24, 32, 24)
    assert out == "transposed convolution output size: 24x32x24\n"     # one line
    # ... and with --explain, the explanation behind it.
    status = main(argv + ["--explain"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.splitlines()[0] == "transposed convolution output size: 24x32x24"
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
    ["--input-shape", "1", "2", "4", "4", "--out-channels", "3", "--kernel", "2",
     "--stride", "2", "--padding", "1"],
    ["--input-shape", "2", "2", "6", "--out-channels", "4", "--kernel", "3", "--stride", "2",
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
    "bench-missing-out-channels": ["bench", "--input-shape", "1", "1", "4", "--kernel", "2"],
    "bench-no-spatial": ["bench", "--input-shape", "1", "1", "--out-channels", "2",
                         "--kernel", "2"],
    "bench-padding-x": ["bench", "--input-shape", "1", "1", "4", "--out-channels", "2",
                        "--kernel", "2", "--padding", "x"],
    "bench-stride-0": ["bench", "--input-shape", "1", "1", "4", "--out-channels", "2",
                       "--kernel", "2", "--stride", "0", "--repeat", "1"],
    "bench-output-padding-5": ["bench", "--input-shape", "1", "1", "4", "--out-channels", "2",
                               "--kernel", "2", "--stride", "2", "--output-padding", "5",
                               "--repeat", "1"],
    "bench-groups-0": ["bench", "--input-shape", "1", "1", "4", "--out-channels", "2",
                       "--kernel", "2", "--groups", "0", "--repeat", "1"],
    "bench-groups-not-dividing": ["bench", "--input-shape", "1", "3", "4", "--out-channels", "2",
                                  "--kernel", "2", "--groups", "2", "--repeat", "1"],
    "bench-out-channels-0": ["bench", "--input-shape", "1", "1", "4", "--out-channels", "0",
                             "--kernel", "2", "--repeat", "1"],
    "bench-threads-0": ["bench", "--input-shape", "1", "1", "4", "--out-channels", "2",
                        "--kernel", "2", "--threads", "0", "--repeat", "1"],
    "bench-repeat-0": ["bench", "--input-shape", "1", "1", "4", "--out-channels", "2",
                       "--kernel", "2", "--repeat", "0"],
    # The reproducers of the fuzzing report: one line each, no traceback.
    "bench-stride-huge": ["bench", "--input-shape", "1", "1", "4", "--kernel", "2",
                          "--out-channels", "1", "--stride", "99999999999999999999"],
    "bench-input-too-big": ["bench", "--input-shape", "1", "1", "99999999999", "--kernel", "3",
                            "--out-channels", "1"],
    "bench-dilation-padding-huge": ["bench", "--input-shape", "1", "1", "4", "--kernel", "3",
                                    "--out-channels", "1", "--dilation", "100000000000000000000",
                                    "--padding", "100000000000000000000"],
    "bench-dilation-1e20": ["bench", "--input-shape", "1", "1", "4", "--kernel", "3",
                            "--out-channels", "1", "--dilation", "1e20", "--padding", "1e20"],
    "shape-dilation-1e20": ["shape", "--input", "4", "--kernel", "3", "--dilation", "1e20",
                            "--padding", "1e20"],
    "explain-plot-no-folder": ["explain", "--input", "4", "--kernel", "2", "--plot",
                               "/nonexistent/dir/x.png"],
    "explain-plot-huge": ["explain", "--input", "4", "--kernel", "3", "--dilation",
                          "100000000000000000000", "--padding", "100000000000000000000",
                          "--plot", "x.png"],
    "explain-plot-format": ["explain", "--input", "4", "--kernel", "2", "--plot", "x.nope"],
    "explain-zero-stuffed-no-folder": ["explain", "--input", "4", "--kernel", "2",
                                       "--zero-stuffed", "/nonexistent/dir/x.gif"],
    "explain-zero-stuffed-3d": ["explain", "--input", "2", "2", "2", "--kernel", "2",
                                "--zero-stuffed", "x.png"],
    "explain-terms-huge-input": ["explain", "--input", "99999999999", "--kernel", "3",
                                 "--terms", "0"],
    "explain-terms-rank": ["explain", "--input", "4", "--kernel", "3", "--terms", "0", "0"],
    "explain-terms-outside": ["explain", "--input", "4", "--kernel", "3", "--terms", "6"],
    "explain-terms-negative": ["explain", "--input", "4", "--kernel", "3", "--terms", "-1"],
    "explain-input-values-count": ["explain", "--input", "3", "--kernel", "3", "--terms", "0",
                                   "--input-values", "1", "2"],
    "explain-kernel-values-word": ["explain", "--input", "3", "--kernel", "3", "--terms", "0",
                                   "--kernel-values", "one"],
    "bench-old-input": ["bench", "--input", "1", "1", "4", "--kernel", "2",
                        "--out-channels", "1"],
    "bench-missing-input-shape": ["bench", "--kernel", "2", "--out-channels", "1"],
    "bench-input-shape-0": ["bench", "--input-shape", "1", "0", "4", "--kernel", "2",
                            "--out-channels", "1"],
}


@pytest.mark.parametrize("argv", list(BAD_ARGUMENTS.values()), ids=list(BAD_ARGUMENTS))
def test_bad_arguments_one_line_status_2(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(argv)
    assert_one_line_error(status, err)
    assert out == ""                       # refused before anything was printed ...
    assert list(tmp_path.iterdir()) == []  # ... or written


def test_bench_too_big_says_what_it_needs():
    status, out, err = run_main(BAD_ARGUMENTS["bench-input-too-big"])
    assert_one_line_error(status, err)
    # 99999999999 float32 values = 372.5 GiB, the output as much again
    assert "745 GiB" in err and "input (1, 1, 99999999999)" in err, err
    status, out, err = run_main(BAD_ARGUMENTS["bench-stride-huge"])
    assert "--stride 99999999999999999999" in err
    status, out, err = run_main(BAD_ARGUMENTS["bench-old-input"])
    assert "--input-shape" in err


@pytest.mark.parametrize("name", ["missing-input", "unknown-subcommand", "stride-0",
                                  "padding-x", "output-padding-5", "input-float",
                                  "bench-stride-0", "bench-stride-huge", "bench-input-too-big",
                                  "bench-dilation-padding-huge", "shape-dilation-1e20",
                                  "explain-plot-no-folder"])
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
        assert "--version" in out
    else:
        assert "--input" in out
    if argv == ["bench", "--help"]:
        assert "--input-shape" in out
        words = " ".join(out.split())
        # says which thread count it uses when --threads is not given
        assert "default: the library's default, sparsetconv.get_num_threads()" in words
        assert f"{stc.get_num_threads()} here" in words


def test_version(capsys):
    status, out, err = run_main(["--version"])
    assert status == 0 and err == ""
    assert out == f"sparsetconv {stc.__version__}\n"
    result = run_module("--version")
    assert result.returncode == 0 and result.stdout == out


def test_bench_default_threads_is_the_library_default(capsys):
    status = main(["bench", "--input-shape", "1", "1", "4", "--out-channels", "1",
                   "--kernel", "2", "--repeat", "1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f", {stc.get_num_threads()} thread(s)" in out.splitlines()[0]


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
