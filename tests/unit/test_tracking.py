"""Health tracking: keepalived's weight arithmetic, fall/rise, implicit interfaces, sync groups.

Configurations go through the real parser (parse_node), as the daemon's do.
"""

from __future__ import annotations

import tomllib

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyvrrp.core.config import NodeConfig, TrackInterface, TrackScript, parse_node
from pyvrrp.core.events import HealthChanged
from pyvrrp.core.tracking import Contribution, Health, ScriptState, Tracking, explain_priority

CHK = "chk_nginx_ingress"


def node(text: str) -> NodeConfig:
    return parse_node(tomllib.loads(text))


def one_instance(
    *,
    priority: int | None = 100,
    script_weight: int | None = None,
    track_scripts: str | None = None,
    track_interfaces: str | None = None,
    fall: int = 1,
    rise: int = 1,
    extra: str = "",
) -> NodeConfig:
    """One instance vip58 on eth0.4000, optionally tracking the script chk_nginx_ingress."""
    lines = []
    if script_weight is not None:
        lines += [
            f"[scripts.{CHK}]",
            'command = ["curl", "http://localhost/healthz"]',
            f"weight = {script_weight}",
            f"fall = {fall}",
            f"rise = {rise}",
        ]
    lines += ["[instances.vip58]", 'interface = "eth0.4000"', "vrid = 58"]
    lines += ['addresses = ["1.2.3.58/29"]']
    if priority is not None:
        lines.append(f"priority = {priority}")
    if track_scripts is not None:
        lines.append(f"track_scripts = {track_scripts}")
    elif script_weight is not None:
        lines.append(f'track_scripts = ["{CHK}"]')
    if track_interfaces is not None:
        lines.append(f"track_interfaces = {track_interfaces}")
    return node("\n".join(lines) + "\n" + extra)


def priority(tracking: Tracking, instance: str = "vip58") -> int:
    return tracking.health(instance).priority


def faults(tracking: Tracking, instance: str = "vip58") -> frozenset[str]:
    return tracking.health(instance).faults


# Weights: every sign, scripts and interfaces.


def test_negative_script_weight_is_subtracted_while_the_script_is_bad() -> None:
    tracking = Tracking(one_instance(script_weight=-60))
    assert priority(tracking) == 100
    assert tracking.script_result(CHK, False) == {"vip58"}
    assert priority(tracking) == 40
    assert faults(tracking) == frozenset()
    tracking.script_result(CHK, True)
    assert priority(tracking) == 100


def test_positive_script_weight_is_added_while_the_script_is_good() -> None:
    tracking = Tracking(one_instance(script_weight=10))
    assert priority(tracking) == 110  # unknown counts as good
    tracking.script_result(CHK, True)
    assert priority(tracking) == 110
    tracking.script_result(CHK, False)
    assert priority(tracking) == 100
    assert faults(tracking) == frozenset()


def test_weight_zero_script_failure_means_fault_and_leaves_the_priority() -> None:
    tracking = Tracking(one_instance(script_weight=0))
    tracking.script_result(CHK, False)
    health = tracking.health("vip58")
    assert health.faults == {f"script {CHK}"}
    assert health.priority == 100
    assert health.event() == HealthChanged(100, frozenset({f"script {CHK}"}))
    tracking.script_result(CHK, True)
    assert faults(tracking) == frozenset()


def test_instance_override_replaces_the_script_weight() -> None:
    tracking = Tracking(
        one_instance(script_weight=-60, track_scripts=f'[{{ name = "{CHK}", weight = 20 }}]')
    )
    assert priority(tracking) == 120
    tracking.script_result(CHK, False)
    assert priority(tracking) == 100
    (contribution,) = [c for c in tracking.health("vip58").contributions if c.kind == "script"]
    assert contribution.weight == 20


def test_instance_override_zero_turns_a_weighted_script_into_a_fault() -> None:
    tracking = Tracking(
        one_instance(script_weight=-60, track_scripts=f'[{{ name = "{CHK}", weight = 0 }}]')
    )
    tracking.script_result(CHK, False)
    assert faults(tracking) == {f"script {CHK}"}
    assert priority(tracking) == 100


def test_negative_interface_weight_is_subtracted_while_it_is_down() -> None:
    tracking = Tracking(one_instance(track_interfaces='[{ name = "eth1", weight = -30 }]'))
    assert tracking.interface_state("eth1", False) == {"vip58"}
    assert priority(tracking) == 70
    assert faults(tracking) == frozenset()
    tracking.interface_state("eth1", True)
    assert priority(tracking) == 100


def test_positive_interface_weight_is_added_while_it_is_up() -> None:
    tracking = Tracking(one_instance(track_interfaces='[{ name = "eth1", weight = 15 }]'))
    assert priority(tracking) == 115  # unknown counts as up
    tracking.interface_state("eth1", False)
    assert priority(tracking) == 100
    tracking.interface_state("eth1", True)
    assert priority(tracking) == 115


def test_bare_interface_down_means_fault() -> None:
    tracking = Tracking(one_instance(track_interfaces='["dummy0"]'))
    tracking.interface_state("dummy0", False)
    assert faults(tracking) == {"interface dummy0"}
    assert priority(tracking) == 100
    tracking.interface_state("dummy0", True)
    assert faults(tracking) == frozenset()


def test_contributions_add_up() -> None:
    tracking = Tracking(
        one_instance(
            script_weight=-20,
            track_interfaces='[{ name = "eth1", weight = 10 }, { name = "eth2", weight = -5 }]',
        )
    )
    assert priority(tracking) == 110
    tracking.script_result(CHK, False)
    tracking.interface_state("eth2", False)
    assert priority(tracking) == 100 + 10 - 20 - 5
    assert tracking.health("vip58").explain() == (
        f"priority 85 = 100 base - 20 {CHK} (bad) + 10 eth1 (unknown) - 5 eth2 (down)"
    )


def test_faults_and_weights_at_once_report_every_fault() -> None:
    tracking = Tracking(one_instance(script_weight=0, track_interfaces='["dummy0", "eth0"]'))
    tracking.script_result(CHK, False)
    tracking.interface_state("dummy0", False)
    assert faults(tracking) == {f"script {CHK}", "interface dummy0"}
    assert tracking.health("vip58").explain() == (
        f"FAULT (script {CHK} bad, interface dummy0 down); priority 100 = 100 base"
    )


# Clamping and the owner.


def test_priority_is_clamped_to_254_at_the_top() -> None:
    tracking = Tracking(one_instance(priority=250, script_weight=10))
    assert priority(tracking) == 254
    assert tracking.health("vip58").explain() == (
        f"priority 254 = 250 base + 10 {CHK} (unknown) = 260, clamped to 1..254"
    )


def test_priority_is_clamped_to_1_at_the_bottom() -> None:
    tracking = Tracking(one_instance(priority=10, script_weight=-60))
    tracking.script_result(CHK, False)
    assert priority(tracking) == 1
    assert tracking.health("vip58").explain_priority() == (
        f"1 = 10 base - 60 {CHK} (bad) = -50, clamped to 1..254"
    )


def test_weights_of_253_reach_both_ends_from_any_base() -> None:
    low = Tracking(one_instance(priority=1, script_weight=253))
    assert priority(low) == 254
    high = Tracking(one_instance(priority=254, script_weight=-253))
    high.script_result(CHK, False)
    assert priority(high) == 1


def test_owner_priority_is_never_changed_by_weights() -> None:
    # The parser refuses weights on an owner (they would do nothing); a library user may
    # still build such a config directly, and the weights must then indeed do nothing.
    config = node(
        f'[scripts.{CHK}]\ncommand = "true"\n'
        '[instances.vip58]\ninterface = "eth0.4000"\nvrid = 58\nstate = "master"\n'
        f'addresses = ["1.2.3.58/29"]\ntrack_scripts = ["{CHK}"]\n'
        'track_interfaces = ["dummy0"]\n'
    )
    owner = config.instances["vip58"]
    assert owner.priority == 255
    weighted = attrs.evolve(
        owner,
        track_scripts=(TrackScript(CHK, -60),),
        track_interfaces=(*owner.track_interfaces, TrackInterface("eth1", 30)),
    )
    tracking = Tracking(attrs.evolve(config, instances={"vip58": weighted}))
    assert priority(tracking) == 255
    tracking.script_result(CHK, False)
    tracking.interface_state("eth1", False)
    assert priority(tracking) == 255
    assert all(c.effect == 0 for c in tracking.health("vip58").contributions)
    assert tracking.health("vip58").explain() == (
        "priority 255 (address owner: trackers never change it)"
    )


def test_owner_still_faults_on_a_weight_zero_tracker() -> None:
    config = node(
        f'[scripts.{CHK}]\ncommand = "true"\n'
        '[instances.vip58]\ninterface = "eth0.4000"\nvrid = 58\nstate = "master"\n'
        f'addresses = ["1.2.3.58/29"]\ntrack_scripts = ["{CHK}"]\n'
        'track_interfaces = ["dummy0"]\n'
    )
    tracking = Tracking(config)
    tracking.interface_state("dummy0", False)
    assert tracking.health("vip58").owner
    assert faults(tracking) == {"interface dummy0"}
    assert priority(tracking) == 255
    tracking.interface_state("dummy0", True)
    tracking.script_result(CHK, False)
    assert faults(tracking) == {f"script {CHK}"}


# The startup rule and fall/rise.


def test_a_script_counts_as_good_until_its_first_result() -> None:
    tracking = Tracking(one_instance(script_weight=0, fall=3, rise=3))
    assert tracking.script(CHK).state == "unknown"
    assert tracking.script(CHK).good
    assert faults(tracking) == frozenset()
    (contribution,) = [c for c in tracking.health("vip58").contributions if c.kind == "script"]
    assert contribution == Contribution("script", CHK, 0, "unknown", 0, False, False)


def test_first_failure_decides_at_once_whatever_fall_says() -> None:
    tracking = Tracking(one_instance(script_weight=-60, fall=3, rise=3))
    assert tracking.script_result(CHK, False) == {"vip58"}
    assert tracking.script(CHK).state == "bad"
    assert priority(tracking) == 40
    # Afterwards rise counts: two successes are not enough, the third is.
    assert tracking.script_result(CHK, True) == frozenset()
    assert tracking.script_result(CHK, True) == frozenset()
    assert tracking.script(CHK).position() == "2/3 successes to rise"
    assert tracking.script_result(CHK, True) == {"vip58"}
    assert priority(tracking) == 100


def test_first_success_decides_at_once_then_fall_counts() -> None:
    tracking = Tracking(one_instance(script_weight=-60, fall=2, rise=5))
    # unknown -> good changes what the status shows, not the priority
    assert tracking.script_result(CHK, True) == {"vip58"}
    assert tracking.script(CHK).state == "good"
    assert tracking.script_result(CHK, False) == frozenset()
    assert tracking.script(CHK).position() == "1/2 failures to fall"
    assert priority(tracking) == 100
    assert tracking.script_result(CHK, False) == {"vip58"}
    assert priority(tracking) == 40


def test_fall_needs_consecutive_failures() -> None:
    state = ScriptState(fall=3, rise=1)
    state.record(True)
    for success in (False, False, True, False, False):
        assert not state.record(success)
        assert state.state == "good"
    assert state.record(False)
    assert state.state == "bad"
    assert (state.successes, state.failures, state.results) == (0, 3, 7)


def test_rise_needs_consecutive_successes() -> None:
    state = ScriptState(fall=1, rise=2)
    state.record(False)
    for success in (True, False, True):
        assert not state.record(success)
        assert state.state == "bad"
    assert state.record(True)
    assert state.state == "good"
    assert (state.successes, state.failures) == (2, 0)


def test_repeated_results_change_nothing() -> None:
    tracking = Tracking(one_instance(script_weight=-60))
    tracking.script_result(CHK, False)
    assert tracking.script_result(CHK, False) == frozenset()
    assert tracking.script(CHK).failures == 2


def test_script_state_rejects_zero_fall_or_rise() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ScriptState(fall=0)


# Interfaces: implicit tracking, by name.


def test_instance_interface_is_tracked_implicitly_with_weight_zero() -> None:
    tracking = Tracking(one_instance())
    assert tracking.tracked_interfaces() == {"eth0.4000"}
    assert tracking.interfaces() == {"eth0.4000": None}
    (contribution,) = tracking.health("vip58").contributions
    assert contribution == Contribution("interface", "eth0.4000", 0, "unknown", 0, False, True)
    tracking.interface_state("eth0.4000", False)
    assert faults(tracking) == {"interface eth0.4000"}


def test_devices_of_addresses_and_excluded_addresses_are_tracked_implicitly() -> None:
    tracking = Tracking(
        node(
            '[instances.vip58]\ninterface = "eth0.4000"\nvrid = 58\n'
            'addresses = ["1.2.3.58/29", { address = "1.2.4.58/29", dev = "eth1" }]\n'
            'excluded_addresses = [{ address = "2001:db8::58/64", dev = "eth2" }]\n'
        )
    )
    assert tracking.tracked_interfaces() == {"eth0.4000", "eth1", "eth2"}
    assert [c.name for c in tracking.health("vip58").contributions] == [
        "eth0.4000",
        "eth1",
        "eth2",
    ]
    tracking.interface_state("eth2", False)
    assert faults(tracking) == {"interface eth2"}


def test_explicit_weight_takes_precedence_over_implicit_tracking() -> None:
    tracking = Tracking(one_instance(track_interfaces='[{ name = "eth0.4000", weight = -20 }]'))
    tracking.interface_state("eth0.4000", False)
    assert faults(tracking) == frozenset()
    assert priority(tracking) == 80
    (contribution,) = tracking.health("vip58").contributions
    assert contribution == Contribution("interface", "eth0.4000", -20, "down", -20, False, False)


def test_interface_deleted_and_recreated_is_tracked_again_by_name() -> None:
    tracking = Tracking(one_instance(track_interfaces='["dummy0"]'))
    tracking.interface_state("dummy0", True)
    tracking.interface_state("dummy0", False)  # deleted: down
    assert faults(tracking) == {"interface dummy0"}
    assert tracking.interface_state("dummy0", True) == {"vip58"}  # recreated, same name
    assert faults(tracking) == frozenset()
    assert tracking.interfaces()["dummy0"] is True


def test_untracked_interface_is_ignored() -> None:
    tracking = Tracking(one_instance())
    assert tracking.interface_state("wlan0", False) == frozenset()
    assert "wlan0" not in tracking.interfaces()


def test_unknown_to_up_changes_the_status_but_not_the_priority() -> None:
    tracking = Tracking(one_instance())
    before = tracking.health("vip58")
    assert tracking.interface_state("eth0.4000", True) == {"vip58"}
    after = tracking.health("vip58")
    assert after.event() == before.event()
    assert after.contributions[0].state == "up"
    assert tracking.interface_state("eth0.4000", True) == frozenset()


# Several instances and sync groups.

TWO_INSTANCES = f"""
[scripts.{CHK}]
command = "true"
weight = -60

[instances.vip58]
interface = "eth0.4000"
vrid = 58
addresses = ["1.2.3.58/29"]
track_scripts = ["{CHK}"]
track_interfaces = ["dummy0"]

[instances.vip59]
interface = "eth0.4000"
vrid = 59
priority = 75
addresses = ["1.2.3.59/29"]
track_scripts = ["{CHK}"]
track_interfaces = [{{ name = "eth1", weight = 10 }}]

[instances.other]
interface = "eth9"
vrid = 60
addresses = ["1.2.3.60/29"]
"""


def test_a_result_changes_only_the_instances_tracking_it() -> None:
    tracking = Tracking(node(TWO_INSTANCES))
    assert tracking.instances_tracking("script", CHK) == {"vip58", "vip59"}
    assert tracking.script_result(CHK, False) == {"vip58", "vip59"}
    assert priority(tracking, "vip59") == 75 + 10 - 60
    assert tracking.interface_state("dummy0", False) == {"vip58"}
    assert tracking.interface_state("eth9", False) == {"other"}
    assert priority(tracking, "other") == 100
    assert list(tracking.healths()) == ["vip58", "vip59", "other"]


def test_sync_group_member_treats_any_bad_tracker_as_a_fault() -> None:
    config = node(TWO_INSTANCES + '[sync_groups.ingress]\ninstances = ["vip58", "vip59"]\n')
    tracking = Tracking(config)
    # The +10 of eth1 is ignored too: members' weights count as 0.
    assert priority(tracking, "vip59") == 75
    tracking.script_result(CHK, False)
    for instance in ("vip58", "vip59"):
        health = tracking.health(instance)
        assert health.faults == {f"script {CHK}"}
        assert health.sync_group == "ingress"
    assert priority(tracking, "vip58") == 100
    tracking.script_result(CHK, True)
    tracking.interface_state("eth1", False)
    assert faults(tracking, "vip59") == {"interface eth1"}
    assert faults(tracking, "vip58") == frozenset()
    (eth1,) = [c for c in tracking.health("vip59").contributions if c.name == "eth1"]
    assert (eth1.weight, eth1.effect, eth1.fault) == (10, 0, True)  # configured weight shown


def test_instances_outside_the_sync_group_keep_their_weights() -> None:
    config = node(TWO_INSTANCES + '[sync_groups.ingress]\ninstances = ["vip58"]\n')
    tracking = Tracking(config)
    tracking.script_result(CHK, False)
    assert faults(tracking, "vip58") == {f"script {CHK}"}
    assert faults(tracking, "vip59") == frozenset()
    assert priority(tracking, "vip59") == 25
    assert tracking.health("vip59").sync_group is None


# The seed deployment's worked example (docs/hetzner-vswitch.md): vip58 is MASTER 100 on node A,
# BACKUP 75 on C and 50 on B.


def seed_node(priority: int, weight: int) -> NodeConfig:
    return node(
        f"""
[scripts.{CHK}]
command = ["curl", "-fsS", "-o", "/dev/null", "http://localhost:80/healthz"]
interval = 2.0
fall = 2
rise = 2
weight = {weight}

[instances.vip58]
interface = "eth0.4000"
vrid = 58
priority = {priority}
unicast_source = "192.168.200.1"
unicast_peers = ["192.168.200.2", "192.168.200.3"]
addresses = ["1.2.3.58/29"]
excluded_addresses = ["2a03:4444:fff0:59:88::58/64"]
track_interfaces = ["eth0", "dummy0"]
track_scripts = ["{CHK}"]
"""
    )


def failing_master_priority(weight: int) -> int:
    tracking = Tracking(seed_node(100, weight))
    tracking.script_result(CHK, True)
    tracking.script_result(CHK, False)
    tracking.script_result(CHK, False)  # fall = 2
    assert tracking.script(CHK).state == "bad"
    return priority(tracking)


def test_seed_weight_minus_60_puts_a_failing_master_below_both_backups() -> None:
    backups = [priority(Tracking(seed_node(p, -60))) for p in (75, 50)]
    assert backups == [75, 50]  # healthy backups keep their priorities
    failing = failing_master_priority(-60)
    assert failing == 40
    assert failing < min(backups)


def test_seed_weight_minus_2_cannot_move_the_vip() -> None:
    assert failing_master_priority(-2) == 98  # still above 75: the VIP stays


def test_seed_instance_tracks_its_interfaces_implicitly_and_explicitly() -> None:
    tracking = Tracking(seed_node(100, -60))
    assert tracking.tracked_interfaces() == {"eth0.4000", "eth0", "dummy0"}
    tracking.interface_state("dummy0", False)
    assert faults(tracking) == {"interface dummy0"}


# Reload.


def test_reload_carries_script_positions_and_interface_states_over() -> None:
    old = Tracking(one_instance(script_weight=-60, fall=3, track_interfaces='["dummy0"]'))
    old.script_result(CHK, True)
    old.script_result(CHK, False)
    old.interface_state("dummy0", False)
    new = Tracking(
        one_instance(script_weight=-50, fall=2, track_interfaces='["dummy0"]'), previous=old
    )
    script = new.script(CHK)
    assert (script.state, script.failures, script.fall) == ("good", 1, 2)
    assert faults(new) == {"interface dummy0"}
    assert new.script_result(CHK, False) == {"vip58"}  # the second failure of fall = 2
    assert priority(new) == 50


# Invariants.


@given(
    base=st.integers(1, 254),
    weights=st.lists(st.integers(-253, 253), min_size=1, max_size=4),
    results=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_effective_priority_stays_in_1_to_254(
    base: int, weights: list[int], results: list[bool]
) -> None:
    scripts = "".join(
        f'[scripts.s{i}]\ncommand = "true"\nweight = {w}\n' for i, w in enumerate(weights)
    )
    names = ", ".join(f'"s{i}"' for i in range(len(weights)))
    tracking = Tracking(
        node(
            scripts + '[instances.v]\ninterface = "eth0"\nvrid = 1\n'
            f'priority = {base}\naddresses = ["10.0.0.1/24"]\ntrack_scripts = [{names}]\n'
        )
    )
    for i, result in enumerate(results):
        tracking.script_result(f"s{i % len(weights)}", result)
        health = tracking.health("v")
        assert 1 <= health.priority <= 254
        expected = base + sum(c.effect for c in health.contributions)
        assert health.priority == max(1, min(254, expected))
        assert health.faults == {c.label for c in health.contributions if c.fault}
        # The explanation adds up: only clamping may stand between the terms and the result.
        explained = health.explain_priority()
        assert explained.startswith(f"{health.priority} = {base} base")
        assert "the terms add up to" not in explained
        assert ("clamped" in explained) == (expected != health.priority)


@pytest.mark.parametrize(
    ("base", "priority", "terms", "expected"),
    [
        (100, 100, [], "100 = 100 base"),
        # Weight 0 causes FAULT and changes nothing: it is no term.
        (100, 100, [(0, "dummy0", "down")], "100 = 100 base"),
        (
            100,
            60,
            [(-60, CHK, "bad"), (0, "eth0", "up"), (20, "eth1", "up")],
            f"60 = 100 base - 60 {CHK} (bad) + 20 eth1 (up)",
        ),
        (50, 1, [(-60, CHK, "bad")], f"1 = 50 base - 60 {CHK} (bad) = -10, clamped to 1..254"),
        (255, 255, [(-60, CHK, "bad")], "255 (address owner: trackers never change it)"),
        (100, None, [(-60, CHK, "bad")], f"? = 100 base - 60 {CHK} (bad)"),
        (100, 90, [(-60, CHK, "bad")], f"90 = 100 base - 60 {CHK} (bad) (the terms add up to 40)"),
    ],
)
def test_explain_priority_names_every_tracker_that_changes_the_priority(
    base: int, priority: int | None, terms: list[tuple[int, str, str]], expected: str
) -> None:
    assert explain_priority(base, priority, terms) == expected


def test_health_is_a_value() -> None:
    a = Tracking(one_instance(script_weight=-60)).health("vip58")
    b = Tracking(one_instance(script_weight=-60)).health("vip58")
    assert a == b
    assert isinstance(a, Health)
    assert a.base == 100 and not a.owner


def test_explain_without_contributions_is_the_base_priority() -> None:
    tracking = Tracking(one_instance(script_weight=-60))
    assert tracking.health("vip58").explain() == "priority 100 = 100 base"
    assert tracking.script(CHK).position() == ""
    assert repr(tracking.script(CHK)) == (
        "ScriptState(unknown, successes=0, failures=0, fall=1, rise=1)"
    )


def test_only_tracked_scripts_are_reported_as_tracked() -> None:
    config = node(TWO_INSTANCES + '[scripts.unused]\ncommand = "true"\n')
    tracking = Tracking(config)
    assert tracking.config is config
    assert tracking.tracked_scripts() == {CHK}
    assert tracking.script_result("unused", False) == frozenset()
    assert tracking.script("unused").state == "bad"


def test_unknown_script_name_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no script named 'nope'"):
        Tracking(one_instance()).script_result("nope", True)


def test_instance_tracking_an_unconfigured_script_is_refused() -> None:
    config = one_instance(script_weight=-60)
    broken = attrs.evolve(config, scripts={})
    with pytest.raises(ValueError, match="tracks script chk_nginx_ingress, which is not"):
        Tracking(broken)


def test_contributions_list_scripts_then_listed_then_implicit_interfaces() -> None:
    tracking = Tracking(seed_node(100, -60))
    contributions = tracking.health("vip58").contributions
    assert [(c.label, c.implicit) for c in contributions] == [
        (f"script {CHK}", False),
        ("interface eth0", False),
        ("interface dummy0", False),
        ("interface eth0.4000", True),
    ]
