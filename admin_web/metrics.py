"""``/metrics``: the branch in the Prometheus text format, read from the database at each scrape.

The figures belong to the device and sync processes, so the web process keeps
none of them in memory: every scrape gets a fresh registry whose one collector
reads the shared database. The counters come from ``hourly_counts``, which only
ever grows, so ``rate()`` keeps working after raw events pass their retention.

What the device reports about its doors, readers and the building is given only
while its heartbeat says it runs (``device.heartbeat``): a stopped device has let
go of its relays, and its last rows would say otherwise. ``omaovi_device_up``
says which.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from admin_web import branch_now
from device.config import Config
from device.events import parse_utc
from device.heartbeat import KEY as HEARTBEAT_KEY, liveness
from device.store import Store

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Counter family -> (help text, the label that tells its counters apart, if any).
COUNTERS = {
    "omaovi_visits": ("Granted entrance taps of patrons, by the mode at the time", "mode"),
    "omaovi_denials": ("Refused taps, by reason", "reason"),
    "omaovi_booth_uses": ("Granted booth taps", None),
    "omaovi_booth_minutes": ("Minutes of booth reservations, counted at each reservation's first use", None),
    "omaovi_staff_entries": ("Taps of staff cards", None),
    "omaovi_exits": ("Presses of the exit button", None),
    "omaovi_door_alarms": ("Doors held open too long or forced open", "alarm"),
    "omaovi_pin_lockouts": ("Cards locked out of PIN entry after too many wrong PINs", None),
    "omaovi_tailgating": ("Door cycles in which the people counter saw more people come in than cards were granted", None),
    "omaovi_closings_with_people_inside": ("Closings with people still counted inside (the alarm was then not armed)", None),
}
#: hourly_counts metric -> (counter family, value of its label); denials are by prefix.
_COUNTER_OF = {
    "visit_self_service": ("omaovi_visits", "self_service"),
    "visit_staffed": ("omaovi_visits", "staffed"),
    "booth_use": ("omaovi_booth_uses", None),
    "booth_minutes": ("omaovi_booth_minutes", None),
    "staff_entry": ("omaovi_staff_entries", None),
    "exit": ("omaovi_exits", None),
    "door_held_open": ("omaovi_door_alarms", "held_open"),
    "door_forced_open": ("omaovi_door_alarms", "forced_open"),
    "pin_lockout": ("omaovi_pin_lockouts", None),
    "tailgating": ("omaovi_tailgating", None),
    "people_inside_after_close": ("omaovi_closings_with_people_inside", None),
}
#: Door states (device/door.py) in which the door stands open, and those that are alarms.
OPEN_STATES = ("open", "held_open", "forced")
ALARM_STATES = ("held_open", "forced")
MODES = ("staffed", "self_service", "closed")


def render(store: Store, config: Config) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BranchCollector(store, config))
    return generate_latest(registry)


class BranchCollector:
    """Reads one branch's database each time it is collected."""

    def __init__(self, store: Store, config: Config):
        self.store = store
        self.config = config

    def collect(self) -> Iterator[Metric]:
        now = branch_now.utc_now()
        status = self.store.status()
        mode = self.store.schedule(self.config.tz).mode_at(now)
        device = liveness(status.get(HEARTBEAT_KEY), now)
        yield GaugeMetricFamily("omaovi_device_up", "1 while the door controller's heartbeat is fresh", int(device.running))
        if device.heartbeat_age is not None:
            yield GaugeMetricFamily("omaovi_device_heartbeat_age_seconds", "Seconds since the door controller's last heartbeat", device.heartbeat_age)
        if device.running:
            yield from self._doors(status)
            yield from self._building(status, now, mode)
        drift = status.get("sync:clock_drift_seconds")
        if drift is not None:
            yield GaugeMetricFamily("omaovi_clock_drift_seconds", "The central service's clock minus this Pi's", drift["value"])
        yield self._mode(mode)
        yield from self._counters()
        yield from self._sync()
        yield from self._sip2()
        yield GaugeMetricFamily("omaovi_unpushed_events", "Events not yet accepted by the central service", self.store.unpushed_event_count())
        yield GaugeMetricFamily("omaovi_patron_cache_entries", "Cards in the patron permission cache", self.store.patron_count())

    def _doors(self, status: dict[str, dict]) -> Iterator[Metric]:
        gauges = {
            "unlocked": GaugeMetricFamily("omaovi_door_unlocked", "1 while the lock is released and the door is shut", labels=["door"]),
            "open": GaugeMetricFamily("omaovi_door_open", "1 while the door stands open", labels=["door"]),
            "alarm": GaugeMetricFamily("omaovi_door_alarm", "1 while the door is held open too long or was forced", labels=["door"]),
            "lockdown": GaugeMetricFamily("omaovi_door_lockdown", "1 while staff have locked the door down", labels=["door"]),
        }
        readers = GaugeMetricFamily("omaovi_reader_online", "1 while the door's card reader answers", labels=["door"])
        dropped = CounterMetricFamily(
            "omaovi_reader_dropped_reads", "Reads dropped as not a card (noise, a cut frame) since the device started", labels=["door"],
        )
        for door in self.config.doors:
            door_status = status.get(f"door:{door.id}")
            if door_status is not None:  # the device has not reported this door yet
                state = door_status["value"].get("state")
                gauges["unlocked"].add_metric([door.id], int(state == "unlocked"))
                gauges["open"].add_metric([door.id], int(state in OPEN_STATES))
                gauges["alarm"].add_metric([door.id], int(state in ALARM_STATES))
                gauges["lockdown"].add_metric([door.id], int(bool(door_status["value"].get("lockdown"))))
            reader = status.get(f"reader:{door.id}")
            if reader is not None:
                readers.add_metric([door.id], int(bool(reader["value"].get("online"))))
            reads = status.get(f"reader_dropped:{door.id}")
            if reads is not None:
                dropped.add_metric([door.id], reads["value"])
        yield from gauges.values()
        yield readers
        yield dropped

    def _building(self, status: dict[str, dict], now, mode: str) -> Iterator[Metric]:
        """The door extras the branch has, once the device has reported each."""
        building = branch_now.building_now(self.config, status, now, key_prefix=0)
        if building.has_lights and building.lights is not None:
            yield GaugeMetricFamily("omaovi_lights_on", "1 while the device has the lights on", int(building.lights))
        if building.has_alarm and building.alarm_armed is not None:
            yield GaugeMetricFamily("omaovi_alarm_armed", "1 while the intruder alarm is armed", int(building.alarm_armed))
        if building.counts_people and building.people_inside is not None:
            yield GaugeMetricFamily("omaovi_people_inside", "People inside by the occupancy estimate", building.people_inside)
            yield GaugeMetricFamily(
                "omaovi_people_inside_after_close", "People counted inside while the hours say closed; 0 while open",
                branch_now.people_inside_after_close(building, mode),
            )
        if building.pin_lockouts is not None:
            yield GaugeMetricFamily("omaovi_pin_locked_out_cards", "Cards locked out of PIN entry now", len(building.pin_lockouts))

    def _mode(self, mode: str) -> Metric:
        gauge = GaugeMetricFamily("omaovi_mode", "1 for the mode the hours give now", labels=["mode"])
        for name in MODES:
            gauge.add_metric([name], int(name == mode))
        return gauge

    def _counters(self) -> Iterator[Metric]:
        families = {
            name: CounterMetricFamily(name, text, labels=["door", label] if label else ["door"])
            for name, (text, label) in COUNTERS.items()
        }
        for row in self.store.count_totals():
            metric = row["metric"]
            if metric.startswith("denied_"):
                family, value = "omaovi_denials", metric.removeprefix("denied_")
            elif metric in _COUNTER_OF:
                family, value = _COUNTER_OF[metric]
            else:
                continue
            families[family].add_metric([row["door"]] + ([value] if value else []), row["count"])
        yield from families.values()

    def _sip2(self) -> Iterator[Metric]:
        """The library system as the device itself meets it; no samples without [sip2]."""
        reported = self.store.status().get("sip2")
        if reported is None:
            return
        state = reported["value"]
        yield GaugeMetricFamily("omaovi_sip2_breaker_open", "1 while the device does not ask the library system (SIP2)",
                                int(state.get("breaker") != "closed"))
        for key, name, text in (
            ("last_success", "last_success", "When the device's last SIP2 check succeeded"),
            ("last_error_at", "last_error", "When the device's last SIP2 check failed"),
        ):
            if state.get(key):
                yield GaugeMetricFamily(f"omaovi_sip2_{name}_timestamp_seconds", text, parse_utc(state[key]).timestamp())

    def _sync(self) -> Iterator[Metric]:
        # sync_state column -> the gauge of its time.
        times = {
            column: GaugeMetricFamily(f"omaovi_sync_{name}_timestamp_seconds", text, labels=["stream"])
            for column, name, text in (
                ("last_success", "last_success", "When the stream's last round with the central service succeeded"),
                ("last_attempt", "last_attempt", "When the stream last tried the central service"),
                ("last_error_at", "last_error", "When the stream's last failed round was"),
            )
        }
        failing = GaugeMetricFamily("omaovi_sync_error", "1 while the stream's last round failed", labels=["stream"])
        for stream, state in self.store.sync_states().items():
            for column, gauge in times.items():
                stamp = state[column]
                if stamp:
                    gauge.add_metric([stream], parse_utc(stamp).timestamp())
            failing.add_metric([stream], int(state["last_error"] is not None))
        yield from times.values()
        yield failing
