"""The canary's pure parts: the canary front's nginx configuration (as text), its reading of
the access log into per-arm numbers, and the check that judges a canary against production."""

import time

import pytest

from mlhub.deployers.base import ModelRef
from mlhub.deployers.canary_front import CanaryFront, Split, front_conf, percentile
from mlhub.errors import BadRequest
from mlhub.publisher.canary import CANARY_PERCENTS, CanaryCheck
from mlhub.publisher.views import check_share

IRIS = ModelRef("jane.doe", "iris")


def test_the_front_splits_each_models_plain_and_production_urls_by_request():
    conf = front_conf(
        [Split(IRIS, "http://127.0.0.1:4001", "http://10.1.0.7:8080", 20.0)],
        listen="127.0.0.1:5000",
        run_dir="/run/front",
        generation=3,
    )
    assert "    upstream s0_stable {\n        server 127.0.0.1:4001 max_fails=0;" in conf
    assert "    upstream s0_canary {\n        server 10.1.0.7:8080 max_fails=0;" in conf
    assert (
        '    split_clients "${request_id}" $s0_arm {\n        20% canary;\n        * stable;\n'
        in conf
    )
    for location in (
        'location = "/models/jane.doe/iris" {',
        'location ^~ "/models/jane.doe/iris/" {',
        'location ^~ "/models/jane.doe/iris@production/" {',
    ):
        assert location in conf
    assert "proxy_pass http://s0_$s0_arm;" in conf and 'set $mlhub_model "jane.doe/iris";' in conf
    assert 'return 200 "3";' in conf  # the generation the publisher waits for
    assert "access_log /run/front/access.log mlhub if=$mlhub_arm;" in conf
    assert "client_max_body_size 0;" in conf  # the runtimes hold their own limits
    assert "keepalive_timeout 0;" in conf  # a reload never closes a connection the proxy reuses
    assert "user " not in conf


def test_odd_owner_names_stay_one_nginx_string():
    odd = ModelRef('we"ird\\name', "m")
    conf = front_conf(
        [Split(odd, "http://a:1", "http://b:2", 5.5)], listen="1", run_dir="/r", generation=1
    )
    assert 'location = "/models/we\\"ird\\\\name/m" {' in conf
    assert "5.5% canary;" in conf


def test_the_front_counts_each_arms_requests_errors_and_latency(tmp_path):
    front = CanaryFront(run_dir=str(tmp_path), window_seconds=60)
    now = time.time()
    lines = [f"{now - 120:.3f}\tjane.doe/iris\tcanary\t500\t0.001"]  # outside the window
    lines += [f"{now:.3f}\tjane.doe/iris\tstable\t200\t0.010" for _ in range(8)]
    lines += [f"{now:.3f}\tjane.doe/iris\tstable\t401\t0.001"]  # the caller's: no error
    lines += [f"{now:.3f}\tjane.doe/iris\tcanary\t400\t0.002"]
    lines += [f"{now:.3f}\tjane.doe/iris\tcanary\t200\t0.030"]
    lines += [f"{now:.3f}\tother/m\tcanary\t500\t0.5", "garbage", f"{now:.3f}\tjane.doe/iris\tcan"]
    (tmp_path / "access.log").write_text("\n".join(lines))  # the last line is not complete yet
    stats = front.stats(IRIS)
    assert stats["stable"] == {
        "requests": 9,
        "errors": 0,
        "error_rate": 0.0,
        "p50_ms": 10.0,
        "p95_ms": 10.0,
    }
    assert stats["canary"] == {
        "requests": 2,
        "errors": 1,
        "error_rate": 0.5,
        "p50_ms": 2.0,
        "p95_ms": 30.0,
    }
    with open(tmp_path / "access.log", "a") as fh:  # the rest of the line arrives
        fh.write("ary\t200\t0.001\n")
    assert front.stats(IRIS)["canary"]["requests"] == 3


def test_percentile_is_the_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([1, 2, 3, 4], 0.5) == 2 and percentile([1, 2, 3, 4], 0.95) == 4


def arm(requests, errors=0, p95=10.0):
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "p50_ms": p95 / 2,
        "p95_ms": p95,
    }


def test_the_check_aborts_only_a_canary_worse_by_more_than_its_margins():
    check = CanaryCheck()
    assert check.verdict({"stable": arm(100), "canary": arm(19, errors=19)}) is None  # too few
    why = check.verdict({"stable": arm(100, errors=1), "canary": arm(40, errors=4)})
    assert why.startswith("its error rate was 10% (4 of 40 requests) against production's 1%")
    assert check.verdict({"stable": arm(100, errors=1), "canary": arm(40, errors=2)}) is None
    slow = check.verdict({"stable": arm(100, p95=10), "canary": arm(40, p95=45)})
    assert "95th percentile latency was 45 ms against production's 10 ms" in slow
    # twice as slow, but by less than min_latency_increase_ms: a fast model stays
    assert check.verdict({"stable": arm(100, p95=1), "canary": arm(40, p95=3)}) is None
    strict = CanaryCheck(max_error_rate_increase=0.0, min_requests=1)
    assert strict.verdict({"stable": arm(100), "canary": arm(1, errors=1)})


@pytest.mark.parametrize("bad", [0, 100, -5, "lots", None, True])
def test_a_share_is_a_percentage_both_arms_get(bad):
    with pytest.raises(BadRequest) as refused:
        check_share(bad, CANARY_PERCENTS, "of production's requests the canary gets")
    assert refused.value.detail == {"field": "percent"}


def test_a_share_is_kept_to_two_decimals():
    assert check_share("12.345", CANARY_PERCENTS, "") == 12.35
    assert check_share(20, CANARY_PERCENTS, "") == 20.0


def test_an_ending_split_routes_to_production_while_nginx_keeps_it():
    front = CanaryFront(run_dir="/nonexistent", host="127.0.0.1", port=5000)
    front.splits[IRIS.key] = Split(IRIS, "http://127.0.0.1:4001", "http://127.0.0.1:4002", 20)
    assert front.routed_target(IRIS, "http://127.0.0.1:4001") == "http://127.0.0.1:5000"
    canary = IRIS.with_alias("canary")
    assert front.routed_target(canary, "http://127.0.0.1:4002") == "http://127.0.0.1:4002"
    front.end(IRIS)
    # a route check re-adding routes now puts production's target back, never the front's
    assert front.routed_target(IRIS, "http://127.0.0.1:4001") == "http://127.0.0.1:4001"
    assert front.stable_target(IRIS) == "http://127.0.0.1:4001"
