"""tgdfer.threads: the thread count from the affinity mask, the cgroup quota and the environment."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from tgdfer.threads import (ThreadChoice, apply_threads, cgroup_quota, choose_threads, fixed_threads, parse_cfs,
                            parse_cpu_max)


def test_parse_quotas():
    assert parse_cpu_max("150000 100000\n") == 1.5
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("50000") == 0.5  # the period defaults to 100 ms
    assert parse_cfs("-1\n", "100000\n") is None
    assert parse_cfs("200000\n", "100000\n") == 2.0


@pytest.mark.parametrize("cpus, quota, env, requested, threads", [
    (16, None, {}, None, 16),  # no limit: every CPU of the mask
    (16, 4.0, {}, None, 4),  # a container with 4 CPUs on a 16-core host
    (16, 1.5, {}, None, 2),  # fractional quota rounds up
    (16, 0.2, {}, 0, 1),  # never below one thread; 0 = automatic
    (2, 8.0, {}, None, 2),  # a quota above the mask does not add CPUs
    (16, 4.0, {"OMP_NUM_THREADS": "3"}, None, 3),  # the user's OMP_NUM_THREADS wins over the computed value
    (16, 4.0, {"OMP_NUM_THREADS": "4,2"}, None, 4),  # malformed (nested OpenMP list): ignored
    (16, 4.0, {"OMP_NUM_THREADS": "0"}, None, 4),
    (16, 4.0, {"OMP_NUM_THREADS": "3"}, 6, 6),  # an explicit --threads wins over everything
])
def test_choose_threads(cpus, quota, env, requested, threads):
    choice = choose_threads(cpus, quota, env, requested)
    assert choice.threads == threads, choice
    assert choice.reason


def test_choose_threads_refuses_negative():
    with pytest.raises(ValueError):
        choose_threads(4, None, {}, -1)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_takes_the_tightest_quota_of_the_ancestors(tmp_path):
    _write(tmp_path / "cpu.max", "max 100000\n")
    _write(tmp_path / "job" / "cpu.max", "300000 100000\n")
    _write(tmp_path / "job" / "step" / "cpu.max", "max 100000\n")
    assert cgroup_quota(tmp_path, "0::/job/step\n") == 3.0
    assert cgroup_quota(tmp_path, "0::/\n") is None
    # a host path that does not exist inside the container: the mount itself is the cgroup
    _write(tmp_path / "cpu.max", "150000 100000\n")
    assert cgroup_quota(tmp_path, "0::/host/docker/abc\n") == 1.5


def test_cgroup_v1_cpu_controller(tmp_path):
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cpu" / "slurm" / "cpu.cfs_quota_us", "200000\n")
    _write(tmp_path / "cpu" / "slurm" / "cpu.cfs_period_us", "100000\n")
    proc = "4:memory:/slurm\n2:cpuacct:/slurm\n1:cpu:/slurm\n0::/\n"
    assert cgroup_quota(tmp_path, proc) == 2.0
    assert cgroup_quota(tmp_path, "1:cpu:/\n") is None
    assert cgroup_quota(tmp_path / "missing", proc) is None


def test_apply_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        assert apply_threads(ThreadChoice(1, "test")).threads == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cli_threads_option(tmp_path):
    from tgdfer.cli import app

    before = torch.get_num_threads()
    try:
        for n in (3, 1):  # the callback runs before the command, whatever the command then does
            CliRunner().invoke(app, ["--threads", str(n), "info", str(tmp_path / "missing.zarr")])
            assert torch.get_num_threads() == n
        assert CliRunner().invoke(app, ["--threads", "-1", "info", str(tmp_path)]).exit_code == 2  # typer's usage error
    finally:
        torch.set_num_threads(before)


def test_fixed_threads_sets_then_restores_even_on_error():
    before = torch.get_num_threads()
    with fixed_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), fixed_threads(3):
        assert torch.get_num_threads() == 3
        raise KeyError("x")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("cpus, quota, env, requested, load, threads", [
    (2, None, {}, None, 9.3, 1),  # a shared 2-core machine at load 9: one thread (rule 4)
    (2, None, {}, None, 2.0, 1),  # every core held already
    (2, None, {}, None, 1.2, 2),  # a core free: both threads
    (16, 4.0, {}, None, 5.0, 1),  # the quota's 4 CPUs all held
    (16, 4.0, {}, None, 3.0, 4),
    (2, None, {"OMP_NUM_THREADS": "2"}, None, 9.3, 2),  # the user's OMP_NUM_THREADS still wins
    (2, None, {}, 2, 9.3, 2),  # and so does --threads
    (2, None, {}, None, None, 2),  # no load given: rules 1-3 only (every command but the demo)
])
def test_choose_threads_with_the_load_average(cpus, quota, env, requested, load, threads):
    choice = choose_threads(cpus, quota, env, requested, load)
    assert choice.threads == threads, choice
    assert ("load average" in choice.reason) == (threads == 1 and load is not None and requested is None and not env)


def test_only_the_demo_follows_the_load_average(monkeypatch):
    import os

    import tgdfer.cli
    import tgdfer.threads
    from tgdfer.cli import app
    from tgdfer.errors import TgdferError

    applied = []
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    monkeypatch.setattr(tgdfer.threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(tgdfer.threads, "cgroup_quota", lambda: None)
    monkeypatch.setattr(tgdfer.threads, "apply_threads", lambda choice: applied.append(choice) or choice)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def stop(pipe):
        raise TgdferError("stopped before the proxy")

    monkeypatch.setattr(tgdfer.cli, "_ensure_proxy", stop)  # the demo's first step after choosing threads
    demo = CliRunner().invoke(app, ["demo"])
    assert demo.exit_code == 2 and "stopped before the proxy" in demo.output, demo.output
    assert [c.threads for c in applied] == [2, 1]  # the global rule, then the demo's
    assert "torch threads: 1 (load average 50.0 on 2 usable CPUs" in " ".join(demo.output.split())
    applied.clear()
    CliRunner().invoke(app, ["demo", "--help"])
    CliRunner().invoke(app, ["demo", "--print-config"])
    CliRunner().invoke(app, ["train-head", "--print-config"])
    assert [c.threads for c in applied] == [2, 2, 2]  # no load rule before the demo runs, nor for other commands
    applied.clear()
    CliRunner().invoke(app, ["--threads", "2", "demo"])
    assert [c.threads for c in applied] == [2]  # --threads wins
