"""Thread settings: per-Python-thread ``threads(n)``, the process default of
``set_num_threads``, and the default capped by the CPUs the process may use."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import sparsetconv as stc
from sparsetconv import _compiled, _threads
from sparsetconv._plan import adjoint_plan, make_plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_in_threads(counts):
    """Each of len(counts) Python threads enters ``threads(n)``, waits until all are
    inside, and reports what it sees; returns those and what each sees afterwards."""
    barrier = threading.Barrier(len(counts))
    inside, after = [None] * len(counts), [None] * len(counts)

    def work(i, n):
        with stc.threads(n):
            barrier.wait()
            inside[i] = stc.get_num_threads()
            barrier.wait()  # nobody leaves before everybody has looked
        after[i] = stc.get_num_threads()

    workers = [threading.Thread(target=work, args=(i, n)) for i, n in enumerate(counts)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return inside, after


@pytest.mark.skipif(not stc.openmp_enabled(), reason="a serial build always uses 1 thread")
def test_threads_applies_to_its_own_python_thread_only():
    default = stc.get_num_threads()
    counts = [1, 2, 3, 4, 5, 6, 7, 8]
    inside, after = _run_in_threads(counts)
    assert inside == counts
    assert after == [default] * len(counts)
    assert stc.get_num_threads() == default


def test_threads_nested_restores_outer_value():
    default = stc.get_num_threads()
    with stc.threads(1):
        with stc.threads(1):
            assert stc.get_num_threads() == 1
        assert stc.get_num_threads() == 1
    assert stc.get_num_threads() == default


@pytest.mark.skipif(not stc.openmp_enabled(), reason="a serial build always uses 1 thread")
def test_set_num_threads_is_the_process_default():
    default = stc.get_num_threads()
    seen = []
    try:
        stc.set_num_threads(3)
        t = threading.Thread(target=lambda: seen.append(stc.get_num_threads()))
        t.start()
        t.join()
        with stc.threads(2):  # a block overrides the default, in this thread only
            assert stc.get_num_threads() == 2
            stc.set_num_threads(5)  # changes the default, not the block's value
            assert stc.get_num_threads() == 2
        assert stc.get_num_threads() == 5
    finally:
        stc.set_num_threads(default)
    assert seen == [3]


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError),
                                        (1.5, TypeError), ("2", TypeError),
                                        (True, TypeError), (None, TypeError)])
def test_bad_thread_counts_are_refused(bad, error):
    default = stc.get_num_threads()
    with pytest.raises(error, match="n"):
        stc.set_num_threads(bad)
    with pytest.raises(error, match="n"):
        with stc.threads(bad):
            pass
    assert stc.get_num_threads() == default


def _default_in_child(cpus):
    """get_num_threads() of a fresh interpreter pinned to ``cpus`` (no OMP_NUM_THREADS)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    code = "import sparsetconv; print(sparsetconv.get_num_threads())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, preexec_fn=lambda: os.sched_setaffinity(0, cpus),
                            check=True)
    return int(result.stdout)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
@pytest.mark.skipif(not stc.openmp_enabled(), reason="a serial build always uses 1 thread")
def test_default_respects_the_affinity_mask():
    cpus = sorted(os.sched_getaffinity(0))
    assert _default_in_child({cpus[0]}) == 1
    if len(cpus) >= 2:
        assert _default_in_child(set(cpus[:2])) == min(2, _threads.available_cpus())


def test_available_cpus_is_capped_by_affinity():
    assert 1 <= _threads.available_cpus() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert _threads.available_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "50000 100000\n"}, 0.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({}, None),
])
def test_cgroup_quota(tmp_path, files, quota):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert _threads._cgroup_cpu_quota(str(tmp_path)) == quota


def test_cgroup_quota_caps_available_cpus(monkeypatch):
    monkeypatch.setattr(_threads, "_cgroup_cpu_quota", lambda: 0.5)
    assert _threads.available_cpus() == 1


def _child(code, **env_changes):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(env_changes)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)


DISPLAY_ENV = """
import ctypes, os, sys
import sparsetconv
print(repr(sparsetconv._OPENMP_WAIT_POLICY), os.environ.get("OMP_WAIT_POLICY"))
sys.stdout.flush()
gomp = [l.split()[-1] for l in open("/proc/self/maps") if "libgomp" in l][0]
ctypes.CDLL(gomp).omp_display_env(1)   # OpenMP 5.0: prints the runtime's settings
"""


def _libgomp_display_env():
    if not (stc.openmp_enabled() and sys.platform.startswith("linux")):
        pytest.skip("needs the GNU OpenMP runtime on Linux")
    probe = _child("import ctypes, sparsetconv; gomp = [l.split()[-1] for l in "
                   "open('/proc/self/maps') if 'libgomp' in l]; "
                   "print(bool(gomp) and hasattr(ctypes.CDLL(gomp[0]), 'omp_display_env'))")
    if probe.stdout.strip() != "True":
        pytest.skip("the OpenMP runtime is not libgomp >= 11 (no omp_display_env)")


def test_openmp_workers_spin_only_briefly_by_default():
    _libgomp_display_env()
    result = _child(DISPLAY_ENV)
    assert "a short spin, then sleep (set by sparsetconv" in result.stdout
    assert result.stdout.split("\n")[0].endswith(" None")   # environment restored
    # the runtime took the bounded spin (libgomp's own default is 300000 spins)
    assert f"GOMP_SPINCOUNT = '{sparsetconv_idle_spins()}'" in result.stderr


def sparsetconv_idle_spins():
    assert 0 < stc._IDLE_SPINS < 10_000
    return stc._IDLE_SPINS


def test_a_users_wait_policy_wins():
    _libgomp_display_env()
    result = _child(DISPLAY_ENV, OMP_WAIT_POLICY="active")
    assert "set by the user: OMP_WAIT_POLICY=active" in result.stdout
    assert result.stdout.split("\n")[0].endswith(" active")
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in result.stderr
    assert f"GOMP_SPINCOUNT = '{sparsetconv_idle_spins()}'" not in result.stderr


@pytest.mark.parametrize("batch, channels", [(1, 1), (3, 1), (2, 2)])
def test_threads_are_capped_by_the_pieces_the_kernel_shares_out(batch, channels):
    # a direct transposed convolution shares out (sample, channel) planes: with fewer
    # planes than threads, the extra threads would only be woken to wait
    f64 = np.dtype(np.float64)
    plan = make_plan(True, 3, (batch, 1, 32, 32, 32), f64, (1, channels, 5, 5, 5), f64,
                     None, None, 2, 0, 0, 1, 1, None)
    executor = _compiled.Executor(plan, "direct")
    assert plan.flops // _compiled.FLOPS_PER_THREAD > batch * channels  # work enough
    assert executor.max_threads == batch * channels
    # the convolution (its adjoint) shares out output rows: many
    adjoint = _compiled.Executor(adjoint_plan(plan, plan.batch), "direct")
    assert adjoint.max_threads > batch * channels
