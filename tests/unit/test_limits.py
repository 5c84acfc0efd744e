"""Resource limits of local servers: the cgroup values each size becomes."""

from mlhub.limits import Cgroups, Limits, v1_values, v2_values

G = 1024**3


def test_cgroup_v2_values():
    limits = Limits(mem_limit=2 * G, mem_guarantee=G, cpu_limit=1.5, cpu_guarantee=0.25)
    assert v2_values(limits) == {
        "memory.max": str(2 * G),
        "memory.low": str(G),
        "cpu.max": "150000 100000",
        "cpu.weight": "25",
    }


def test_cgroup_v1_values():
    limits = Limits(mem_limit=2 * G, mem_guarantee=G, cpu_limit=0.5, cpu_guarantee=2)
    assert v1_values(limits) == {
        "memory": {
            "memory.limit_in_bytes": str(2 * G),
            "memory.soft_limit_in_bytes": str(G),
        },
        "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000", "cpu.shares": "2048"},
    }


def test_no_limits_write_nothing():
    assert v2_values(Limits()) == {}
    assert v1_values(Limits()) == {"memory": {}, "cpu": {}}


def test_tiny_cpu_values_stay_valid():
    # the kernel refuses quotas under 1 ms and weights under 1
    assert v2_values(Limits(cpu_limit=0.001, cpu_guarantee=0.001)) == {
        "cpu.max": "1000 100000",
        "cpu.weight": "1",
    }
    assert v1_values(Limits(cpu_guarantee=0.0001))["cpu"] == {"cpu.shares": "2"}


def test_oom_kills_are_read_from_the_groups_memory_events(tmp_path):
    """The kernel's count of processes it killed for memory, v2 and v1 (files as the kernel
    writes them, in a plain directory standing in for the cgroup tree)."""
    v2 = tmp_path / "v2"
    (v2 / "srv").mkdir(parents=True)
    (v2 / "srv" / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert Cgroups(2, {"": str(v2)}).oom_kills("srv") == 1
    v1 = tmp_path / "v1"
    (v1 / "srv").mkdir(parents=True)
    (v1 / "srv" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert Cgroups(1, {"memory": str(v1)}).oom_kills("srv") == 2
    assert Cgroups(1, {"memory": str(v1)}).oom_kills("gone") == 0
    assert Cgroups(1, {"cpu": str(v1)}).oom_kills("srv") == 0
