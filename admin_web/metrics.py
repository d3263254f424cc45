"""``/metrics``: the branch in the Prometheus text format, read from the database at each scrape.

The figures belong to the device and sync processes, so the web process keeps
none of them in memory: every scrape gets a fresh registry whose one collector
reads the shared database. The counters come from ``hourly_counts``, which only
ever grows, so ``rate()`` keeps working after raw events pass their retention.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from device.config import Config
from device.events import parse_utc
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
        yield from self._doors()
        yield self._mode()
        yield from self._counters()
        yield from self._sync()
        yield from self._sip2()
        yield GaugeMetricFamily("omaovi_unpushed_events", "Events not yet accepted by the central service", self.store.unpushed_event_count())
        yield GaugeMetricFamily("omaovi_patron_cache_entries", "Cards in the patron permission cache", self.store.patron_count())

    def _doors(self) -> Iterator[Metric]:
        status = self.store.status()
        gauges = {
            "unlocked": GaugeMetricFamily("omaovi_door_unlocked", "1 while the lock is released and the door is shut", labels=["door"]),
            "open": GaugeMetricFamily("omaovi_door_open", "1 while the door stands open", labels=["door"]),
            "alarm": GaugeMetricFamily("omaovi_door_alarm", "1 while the door is held open too long or was forced", labels=["door"]),
            "lockdown": GaugeMetricFamily("omaovi_door_lockdown", "1 while staff have locked the door down", labels=["door"]),
        }
        readers = GaugeMetricFamily("omaovi_reader_online", "1 while the door's card reader answers", labels=["door"])
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
        yield from gauges.values()
        yield readers
        drift = status.get("sync:clock_drift_seconds")
        if drift is not None:
            yield GaugeMetricFamily("omaovi_clock_drift_seconds", "The central service's clock minus this Pi's", drift["value"])

    def _mode(self) -> Metric:
        mode = self.store.schedule(self.config.tz).mode_at(datetime.now(timezone.utc))
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
