"""The statistics page and its CSV: figures from the counters, charts, ranges and groupings."""

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from device.events import Event
from device.schedule import Period

HEL = ZoneInfo("Europe/Helsinki")


@pytest.fixture
def staff(staff):
    staff.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return staff


def visit(local: datetime, mode="self_service", reason="granted", door="entrance", kind="entrance", detail=None):
    return Event(ts=local.replace(tzinfo=HEL).astimezone(timezone.utc), door=door, type="tap", reason=reason,
                 mode=mode, door_kind=kind, detail=detail or {})


@pytest.fixture
def seeded(web_store):
    web_store.set_weekly({d: (Period(480, 600, "self_service"), Period(600, 960, "staffed")) for d in range(7)})
    web_store.record([
        visit(datetime(2026, 11, 2, 8, 15)), visit(datetime(2026, 11, 2, 8, 45)),  # Monday 8-9
        visit(datetime(2026, 11, 2, 12, 0), "staffed"),
        visit(datetime(2026, 11, 10, 9, 0), reason="blocked"), visit(datetime(2026, 11, 10, 9, 5), reason="blocked"),
        visit(datetime(2026, 11, 10, 9, 10), reason="card_expired"),
        visit(datetime(2026, 11, 11, 13, 0), door="booth", kind="booth", detail={"reservation": "r1", "booth_minutes": 90}),
        visit(datetime(2026, 11, 11, 13, 30), door="booth", kind="booth", detail={"reservation": "r1"}),
    ])
    return web_store


def table_row(html: str, label: str) -> list[str]:
    row = re.search(rf"<tr><td class=\"nowrap\"[^>]*>{re.escape(label)}</td>(.*?)</tr>", html).group(1)
    return re.findall(r'<td class="num"[^>]*>([^<]*)</td>', row)


def test_the_page_shows_this_months_figures_table_and_charts(seeded, staff):
    html = staff.get("/stats?from=2026-11-01&to=2026-11-30").get_data(as_text=True)
    # physical visits, taps, self-service, staffed, booth uses, booth hours, refused, self-service hours, staffed hours
    assert table_row(html, "Mon 2.11.2026") == ["3", "3", "2", "1", "0", "0", "0", "2", "6"]
    assert table_row(html, "Wed 11.11.2026") == ["0", "0", "0", "0", "2", "1,5", "0", "2", "6"]
    assert table_row(html, "Tue 10.11.2026")[6] == "3"
    assert html.count('class="bar-self_service"') == 1 and html.count('class="bar-staffed"') == 1
    heights = {series: float(height) for series, height in re.findall(r'class="bar-(\w+)" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', html)}
    assert heights["self_service"] == pytest.approx(2 * heights["staffed"])  # 2 self-service visits, 1 staffed
    assert "style=" not in html
    # The refusals list: translated, most common first.
    assert html.index("Card blocked") < html.index("Card expired")
    # The heatmap: Monday 8-9 is the busiest cell.
    assert html.count('class="heat-') == 7 * 24
    assert re.search(r'class="heat-5"[^>]*><title>Mon 8–9: 2</title>', html)


def test_an_empty_range_says_so_and_defaults_to_this_month(staff):
    html = staff.get("/stats").get_data(as_text=True)
    assert "No visits in this range yet." in html and "Nobody was refused" in html
    today = datetime.now(HEL).date()
    assert f'value="{today.replace(day=1).isoformat()}"' in html


def test_bad_ranges_are_refused_with_a_message(staff):
    response = staff.get("/stats?from=2026-11-10&to=2026-11-01")
    assert response.status_code == 400 and "must not be before" in response.get_data(as_text=True)
    response = staff.get("/stats?from=2020-01-01&to=2026-11-01")
    assert response.status_code == 400 and "at most three years" in response.get_data(as_text=True)
    assert staff.get("/stats?by=year").status_code == 400
    assert staff.get("/stats.csv?from=2020-01-01&to=2026-11-01").status_code == 400


def test_weeks_across_the_dst_change(web_store, staff):
    # Sunday 25 October 2026 is the autumn change; 26 October starts week 44.
    web_store.record([visit(datetime(2026, 10, 25, 23, 30)), visit(datetime(2026, 10, 26, 0, 30), "staffed")])
    html = staff.get("/stats?from=2026-10-19&to=2026-11-01&by=week").get_data(as_text=True)
    assert table_row(html, "Week 43/2026")[2:4] == ["1", "0"]
    assert table_row(html, "Week 44/2026")[2:4] == ["0", "1"]
    web_store.record([visit(datetime(2026, 11, 1, 0, 30))])  # still 31 October in UTC
    months = staff.get("/stats?from=2026-10-01&to=2026-11-30&by=month").get_data(as_text=True)
    assert table_row(months, "October 2026")[1:4] == ["2", "1", "1"]
    assert table_row(months, "November 2026")[1:4] == ["1", "1", "0"]


def test_the_csv_matches_the_table_and_opens_in_finnish_excel(seeded, staff):
    response = staff.get("/stats.csv?from=2026-11-01&to=2026-11-30&by=week")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="omaovi-kallio-2026-11-01-2026-11-30-week.csv"'
    body = response.get_data()
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:4] == ["Period", "Physical visits", "Card taps granted", "Taps in self-service hours"]
    assert rows[0][-2:] == ["Refused: Card blocked", "Refused: Card expired"]
    by_period = {row[0]: row[1:] for row in rows[1:]}
    assert list(by_period) == ["2026-W44", "2026-W45", "2026-W46", "2026-W47", "2026-W48", "2026-W49"]
    html = staff.get("/stats?from=2026-11-01&to=2026-11-30&by=week").get_data(as_text=True)
    for period, label in (("2026-W45", "Week 45/2026"), ("2026-W46", "Week 46/2026")):
        assert by_period[period][:9] == table_row(html, label)
    assert by_period["2026-W46"][-2:] == ["2", "1"]


@pytest.fixture
def counting(tmp_path):
    """A logged-in staff member (English) of a branch whose entrance has a people counter, and its database."""
    from webclient import BRANCH_CONFIG, WebClient, make_app
    from device import config as config_mod
    from device.store import Store

    (tmp_path / "consortium.key").write_text("k" * 32 + "\n")
    (tmp_path / "omaovi.toml").write_text(
        BRANCH_CONFIG.replace("exit_button_pin = 22\n", "exit_button_pin = 22\ncounter_in_pin = 20\ncounter_out_pin = 21\n"))
    app = make_app(config_mod.load(tmp_path / "omaovi.toml"))
    app.test_client_class = WebClient
    client = app.test_client()
    client.login("staff")
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    db = Store(tmp_path / "omaovi.db")
    db.record([
        Event(ts=datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc), door="entrance", type="tailgating", mode="staffed",
              detail={"people_in": 2, "grants": 1}),
        Event(ts=datetime(2026, 11, 2, 11, 0, tzinfo=timezone.utc), door="entrance", type="tailgating", mode="staffed",
              detail={"people_in": 3, "grants": 1}),
        Event(ts=datetime(2026, 11, 2, 19, 0, tzinfo=timezone.utc), door="building", type="people_inside_after_close",
              mode="closed", door_kind="building", detail={"count": 1}),
    ])
    yield client
    db.close()


def test_tailgating_and_people_left_inside_are_columns_where_people_are_counted(counting):
    html = counting.get("/stats?from=2026-11-01&to=2026-11-30").get_data(as_text=True)
    assert '<th class="num">Tailgating</th><th class="num">Closed with people inside</th></tr>' in html
    assert "people_inside_after_close" not in html and ">tailgating<" not in html
    assert table_row(html, "Mon 2.11.2026")[-2:] == ["2", "1"]
    for language, headings in (("fi", ("Perään kulkeminen", "Suljettu ihmisiä sisällä")),
                               ("sv", ("Påhängning", "Stängt med personer kvar"))):
        page = counting.get("/stats?from=2026-11-01&to=2026-11-30", headers={"Accept-Language": language})
        assert all(f'<th class="num">{heading}</th>' in page.get_data(as_text=True) for heading in headings)
    rows = list(csv.reader(io.StringIO(counting.get("/stats.csv?from=2026-11-01&to=2026-11-30").get_data(as_text=True)
                                       .lstrip("\ufeff")), delimiter=";"))
    assert rows[0][-2:] == ["Tailgating", "Closed with people inside"]
    assert [row[-2:] for row in rows[1:] if row[0] == "2026-11-02"] == [["2", "1"]]


def test_a_branch_that_counts_no_people_shows_no_people_columns(seeded, staff):
    html = staff.get("/stats?from=2026-11-01&to=2026-11-30").get_data(as_text=True)
    assert "Tailgating" not in html and "Closed with people inside" not in html
    assert "Tailgating" not in staff.get("/stats.csv?from=2026-11-01&to=2026-11-30").get_data(as_text=True)


def test_the_page_names_physical_visits_and_card_taps_in_every_language(seeded, staff):
    html = staff.get("/stats?from=2026-11-01&to=2026-11-30").get_data(as_text=True)
    assert "Physical visits" in html and "Card taps granted: 3" in html
    assert "Report physical visits in the yearly library statistics." in html
    assert "within 10 minutes counted once" in html
    for language, words in (("fi", ("Fyysiset käynnit", "Hyväksytyt kortinluvut")),
                            ("sv", ("Fysiska besök", "Godkända kortavläsningar"))):
        page = staff.get("/stats?from=2026-11-01&to=2026-11-30", headers={"Accept-Language": language}).get_data(as_text=True)
        assert all(word in page for word in words), language


def test_the_current_month_shows_the_hours_still_to_come_apart(web_store, staff):
    """Open all day every day: the month's elapsed and planned hours add up to the whole month."""
    from device.store import day_bounds
    from tests.branch_history import installed_at

    today = datetime.now(HEL).date()  # the page's own today; everything below is relative to it
    installed_at(web_store, datetime.now(timezone.utc) - timedelta(days=62))
    web_store.set_weekly({d: (Period(0, 1440, "self_service"),) for d in range(7)})
    html = staff.get("/stats").get_data(as_text=True)
    first, last = today.replace(day=1), (today.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    month_hours = (day_bounds(last, HEL)[1] - day_bounds(first, HEL)[0]).total_seconds() / 3600
    heads = re.findall(r'<th class="num"(?: data-label="[^"]*")?>([^<]*)</th>', html)
    total = dict(zip(heads[:len(heads) // 2], heads[len(heads) // 2:]))
    elapsed, planned = (float(total[name].replace(",", ".")) for name in ("Self-service hours", "Self-service hours still planned"))
    assert planned > 0 and elapsed + planned == pytest.approx(month_hours, abs=0.02)
    assert "more planned in this range" in html
    header = next(csv.reader(io.StringIO(staff.get("/stats.csv").get_data(as_text=True).lstrip("\ufeff")), delimiter=";"))
    assert header[8:12] == ["Self-service hours", "Staffed hours", "Self-service hours still planned", "Staffed hours still planned"]
    last_month = staff.get(f"/stats?from={(first - timedelta(days=1)).replace(day=1)}&to={first - timedelta(days=1)}")
    assert "still planned" not in last_month.get_data(as_text=True), "a month that is over has nothing planned"


def test_the_csv_comes_for_other_programs_too(seeded, staff):
    response = staff.get("/stats.csv?from=2026-11-01&to=2026-11-30&by=week&dialect=rfc4180")
    body = response.get_data()
    assert response.status_code == 200 and not body.startswith("\ufeff".encode()) and b"\r\n" in body
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    assert rows[0][:3] == ["Period", "Physical visits", "Card taps granted"]
    assert {row[0]: row[6] for row in rows[1:]}["2026-W46"] == "1.5", "booth hours with a decimal point"
    assert staff.get("/stats.csv?from=2026-11-01&to=2026-11-30&dialect=excel").status_code == 400
    assert 'dialect=rfc4180' in staff.get("/stats?from=2026-11-01&to=2026-11-30").get_data(as_text=True)


def test_editing_the_weekly_hours_on_the_hours_page_leaves_last_months_figures(web_store, staff):
    """The pilot branch's case: November's 318 h became 84 h after the weekly hours were edited."""
    from tests.branch_history import installed_at
    from tests.test_web_hours import weekly_form

    installed_at(web_store, datetime.now(timezone.utc) - timedelta(days=70))
    every_day = {d: [("8", "20", "self_service")] for d in range(7)}
    assert staff.post("/hours/weekly", data=weekly_form(every_day)).status_code == 302
    first = datetime.now(HEL).date().replace(day=1)
    last_month = f"/stats?from={(first - timedelta(days=1)).replace(day=1)}&to={first - timedelta(days=1)}&by=month"

    def self_service_hours() -> str:
        html = staff.get(last_month).get_data(as_text=True)
        return re.findall(r'<td class="num"(?: data-label="[^"]*")?>([^<]*)</td>', html)[7]

    before = self_service_hours()
    assert before == str(12 * ((first - timedelta(days=1)).day))
    assert staff.post("/hours/weekly", data=weekly_form({1: [("16", "19", "self_service")]})).status_code == 302
    assert self_service_hours() == before


def test_a_branch_with_a_people_counter_says_its_visits_are_counted_there(counting):
    html = counting.get("/stats?from=2026-11-01&to=2026-11-30").get_data(as_text=True)
    assert "Physical visits are the people counted in by the people counter (Main entrance)" in html
