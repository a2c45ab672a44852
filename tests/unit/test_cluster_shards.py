"""How --scheduler shards a fleet for Dask workers by fleet_site (pure: no cluster here)."""

from __future__ import annotations

import pickle
from types import MappingProxyType

from fleet.audit.cluster import Shard, WorkerInfo, may_run, plan_shards, site_resource
from fleet.config.inventory import Host


def host(name: str, site: str | None = None) -> Host:
    return Host(
        name=name,
        address="127.0.0.1",
        port=22,
        user=None,
        key_file=None,
        become=False,
        groups=("all",),
        vars=MappingProxyType({} if site is None else {"fleet_site": site}),
        fleet_root="/",
        known_hosts=None,
        netdata_restart="systemctl restart netdata",
        cpus=None,
        cpus_text=None,
    )


def site_worker(addr: str, *sites: str) -> WorkerInfo:
    return WorkerInfo(addr, {site_resource("fleet_site", s): 1 for s in sites})


def test_each_sites_hosts_go_only_to_the_workers_holding_its_resource() -> None:
    hosts = [host("a1", "eu"), host("b1", "us"), host("a2", "eu"), host("a3", "eu")]
    workers = [
        site_worker("tcp://w1", "eu"),
        site_worker("tcp://w2", "eu"),
        site_worker("tcp://w3", "us"),
    ]
    shards, unserved = plan_shards(hosts, "fleet_site", workers)
    assert unserved == {}
    assert shards == [
        Shard((0, 3), "fleet_site=eu", "fleet_site:eu", None),  # one per serving worker
        Shard((2,), "fleet_site=eu", "fleet_site:eu", None),
        Shard((1,), "fleet_site=us", "fleet_site:us", None),
    ]


def test_hosts_without_a_served_site_go_to_the_workers_serving_no_site() -> None:
    hosts = [host("a1", "eu"), host("x1"), host("c1", "asia")]
    workers = [site_worker("tcp://w1", "eu"), WorkerInfo("tcp://w9", {"GPU": 2})]
    shards, unserved = plan_shards(hosts, "fleet_site", workers)
    assert unserved == {}
    # restricted by address: a site worker must not take them
    assert Shard((1, 2), "any site", None, ("tcp://w9",)) in shards


def test_a_plain_cluster_takes_every_host_on_any_worker() -> None:
    hosts = [host(f"h{i}", "eu" if i % 2 else None) for i in range(5)]
    shards, unserved = plan_shards(
        hosts, "fleet_site", [WorkerInfo("tcp://w1", {}), WorkerInfo("tcp://w2", {})]
    )
    assert unserved == {}
    assert [s.hosts for s in shards] == [(0, 2, 4), (1, 3)]
    assert all(s.resource is None and s.workers is None for s in shards)


def test_a_site_no_worker_serves_is_each_hosts_error_when_every_worker_has_a_site() -> None:
    hosts = [host("a1", "eu"), host("c1", "asia"), host("x1")]
    shards, unserved = plan_shards(hosts, "fleet_site", [site_worker("tcp://w1", "eu")])
    assert [s.hosts for s in shards] == [(0,)]
    assert unserved == {
        1: "no Dask worker serves fleet_site=asia (resource fleet_site:asia)",
        2: "no Dask worker serves hosts without fleet_site",
    }


def test_the_shard_var_is_any_host_var() -> None:
    h = host("a1", "eu")  # fleet_site=eu, and region=west below
    h = Host(**{**h.__dict__, "vars": MappingProxyType({**h.vars, "region": "west"})})
    workers = [WorkerInfo("tcp://w1", {"region:west": 1}), site_worker("tcp://w2", "eu")]
    shards, unserved = plan_shards([h], "region", workers)
    # w2 serves no region: it is a general worker for --shard-by region
    assert (shards, unserved) == ([Shard((0,), "region=west", "region:west", None)], {})


def test_a_shard_is_stranded_once_no_worker_may_take_it() -> None:
    shard = Shard((0,), "fleet_site=eu", "fleet_site:eu", None)
    assert may_run(shard, [site_worker("tcp://w2", "eu")])  # a restarted worker, new address
    assert not may_run(shard, [site_worker("tcp://w3", "us")])
    pinned = Shard((0,), "any site", None, ("tcp://w9",))
    assert not may_run(pinned, [WorkerInfo("tcp://w8", {})])
    assert not may_run(Shard((0,), "any site", None, None), [])


def test_a_host_travels_to_a_worker_with_its_read_only_vars() -> None:
    h = host("a1", "eu")
    back = pickle.loads(pickle.dumps(h))
    assert back == h and dict(back.vars) == {"fleet_site": "eu"}
    assert isinstance(back.vars, MappingProxyType)
