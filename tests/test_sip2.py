"""The SIP2 tap-time check against a real SIP2 server on 127.0.0.1 (built on pysip2).

Each test shows what a door would see: a permission, or None ("decide from the
cache"), and that the library system's personal data never leaks out.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import subprocess
import time
from dataclasses import fields, replace
from pathlib import Path

import pytest

from sync.breaker import BreakerOpen, CircuitBreaker
from sync.sip2 import (
    BRANCH_BLOCK,
    CARD_NUMBER_FORMS,
    PROFILES,
    STATUS_BITS,
    Sip2Checker,
    Sip2Client,
    Sip2Config,
    Sip2Error,
    Sip2Result,
    Sip2Timeout,
    checksum,
    frame,
)
from tests.sip2_server import PERSONAL, FakePatron, Sip2Peer

VALID = "10000001"
BLOCKED_STATUS = "10000002"
BRANCH_BLOCKED = "10000003"
CHILD = "10000004"
LOST_CARD = "10000005"
UNKNOWN = "99999999"

KOHA_SUOMI = {
    VALID: FakePatron(extra={"PA": "0", "PC": "AIKUINEN"}),
    BLOCKED_STATUS: FakePatron(status="Y" + " " * 13, extra={"PA": "0", "PC": "AIKUINEN"}),
    BRANCH_BLOCKED: FakePatron(extra={"PA": "1", "PC": "AIKUINEN"}),
    CHILD: FakePatron(extra={"PA": "0", "PC": "LAPSI"}),
    LOST_CARD: FakePatron(status="    Y         ", extra={"PA": "0", "PC": "AIKUINEN"}),
}
EVERGREEN = {
    VALID: FakePatron(extra={"PA": "20991231", "PC": "AIKUINEN"}),
    "10000009": FakePatron(extra={"PA": "20200131", "PC": "AIKUINEN"}),
}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def peer():
    peers = []

    def start(patrons=KOHA_SUOMI, **kwargs) -> Sip2Peer:
        peers.append(Sip2Peer(patrons, **kwargs))
        return peers[-1]

    yield start
    for p in peers:
        p.stop()


@pytest.fixture
def clients():
    made = []

    def make(server: Sip2Peer, cls=Sip2Checker, **overrides):
        settings = dict(
            host="127.0.0.1", port=server.port, username="ovi", password="salasana-123",
            institution="KIRJASTO", location="PASILA", profile="koha-suomi",
            allowed_classes=("AIKUINEN",), timeout=1.5,
        )
        ssl_context = overrides.pop("ssl_context", None)
        clock = overrides.pop("clock", None)
        config = Sip2Config(**{**settings, **overrides})
        kwargs = {"ssl_context": ssl_context}
        if clock is not None:
            kwargs["clock"] = clock
        made.append(cls(config, **kwargs))
        return made[-1]

    yield make
    for c in made:
        c.close()


def allowed(valid_until=None, pin_ok=None) -> Sip2Result:
    return Sip2Result(self_service=True, blocked_reason=None, valid_until=valid_until, pin_ok=pin_ok)


def denied(reason, valid_until=None, pin_ok=None) -> Sip2Result:
    return Sip2Result(self_service=False, blocked_reason=reason, valid_until=valid_until, pin_ok=pin_ok)


# -- framing ----------------------------------------------------------------------

def test_checksum_and_frame_follow_the_sip2_rule():
    # The spec's example login reply: "941AY3AZFDFA".
    assert checksum(b"941AY3AZ") == "FDFA"
    assert frame("9300CNovi|COx|CP|", 7).endswith(b"AY7AZ" + checksum(b"9300CNovi|COx|CP|AY7AZ").encode() + b"\r")


# -- login and patron information -----------------------------------------------------

def test_login_then_patron_answers_on_one_connection(peer, clients):
    server = peer()
    checker = clients(server)

    assert checker.check(VALID) == allowed()
    assert checker.check(VALID) == allowed()

    login = server.requests[0]
    assert (login.login_user_id, login.login_password, login.location_code) == ("ovi", "salasana-123", "PASILA")
    assert server.connections == 1
    assert server.patron_requests() == 2
    assert server.requests[1].institution_id == "KIRJASTO"


@pytest.mark.parametrize(
    "card, expected",
    [
        pytest.param(BLOCKED_STATUS, denied("charge_privileges_denied"), id="charge-privileges-denied"),
        pytest.param(LOST_CARD, denied("card_reported_lost"), id="card-reported-lost"),
        pytest.param(BRANCH_BLOCKED, denied("branch_block"), id="koha-suomi-branch-block"),
        pytest.param(UNKNOWN, replace(denied(None), known=False), id="BL-N-is-unknown-not-blocked"),
        pytest.param(CHILD, replace(denied(None), class_refused=True), id="class-not-in-allow-list"),
    ],
)
def test_patrons_who_may_not_use_self_service(peer, clients, card, expected):
    assert clients(peer()).check(card) == expected


def test_blocking_status_bits_are_configurable(peer, clients):
    checker = clients(peer(), blocking_status=("card_reported_lost",))
    assert checker.check(BLOCKED_STATUS) == allowed()
    assert checker.check(LOST_CARD) == denied("card_reported_lost")


def test_no_allow_list_means_the_class_is_not_checked(peer, clients):
    assert clients(peer(), allowed_classes=()).check(CHILD) == allowed()


def test_evergreen_profile_reads_the_expiry_date(peer, clients):
    checker = clients(peer(EVERGREEN), profile="evergreen")
    assert checker.check(VALID) == allowed(valid_until=dt.date(2099, 12, 31))
    # Expired: the date is reported; decide() turns a past date into card_expired.
    assert checker.check("10000009") == allowed(valid_until=dt.date(2020, 1, 31))


@pytest.mark.parametrize(
    "profile, patrons, field",
    [
        pytest.param("evergreen", KOHA_SUOMI, "PA", id="evergreen-profile-on-koha-suomi-server"),
        pytest.param("koha-suomi", EVERGREEN, "PA", id="koha-suomi-profile-on-evergreen-server"),
        pytest.param("koha-suomi", {VALID: FakePatron(extra={"PC": "AIKUINEN"})}, "PA", id="branch-flag-missing"),
    ],
)
def test_a_value_that_does_not_fit_the_profile_is_an_error(peer, clients, profile, patrons, field):
    server = peer(patrons)
    with pytest.raises(Sip2Error, match=f"field {field}"):
        clients(server, cls=Sip2Client, profile=profile).patron_information(VALID)
    assert clients(server, profile=profile).check(VALID) is None


@pytest.mark.parametrize(
    "pin, pin_ok",
    [pytest.param("1234", True, id="right"), pytest.param("0000", False, id="wrong"), pytest.param(None, None, id="none")],
)
def test_pin_is_checked_by_the_library_system(peer, clients, pin, pin_ok):
    server = peer()
    assert clients(server).check(VALID, pin=pin) == allowed(pin_ok=pin_ok)
    assert server.requests[-1].patron_password == pin


# -- a misbehaving server ---------------------------------------------------------------

@pytest.mark.parametrize(
    "fault, message",
    [
        pytest.param("garble", "garbled reply", id="garbled"),
        pytest.param("bad_checksum", "wrong checksum", id="wrong-checksum"),
        pytest.param("bad_sequence", "wrong sequence number", id="wrong-sequence"),
        pytest.param("flood", "longer than 65536 bytes without a CR", id="no-CR-within-64-KiB"),
    ],
)
def test_a_damaged_reply_is_never_accepted(peer, clients, fault, message):
    server = peer()
    client = clients(server, cls=Sip2Client)
    server.faults.append(fault)
    with pytest.raises(Sip2Error, match=message):
        client.patron_information(VALID)
    # The connection is dropped after an error; the next call logs in afresh and works.
    assert client.patron_information(VALID) == allowed()
    assert server.connections == 2


def test_a_96_reply_makes_the_client_resend(peer, clients):
    server = peer()
    server.faults.append("resend")
    assert clients(server).check(VALID) == allowed()
    assert server.patron_requests() == 2
    assert server.requests[1] == server.requests[2]


def test_endless_96_replies_are_an_error(peer, clients):
    server = peer()
    server.faults.extend(["resend"] * 5)
    with pytest.raises(Sip2Error, match="more than 2 times"):
        clients(server, cls=Sip2Client).patron_information(VALID)
    assert server.patron_requests() == 3


def test_a_slow_server_times_out_within_the_configured_time(peer, clients):
    server = peer()
    client = clients(server, cls=Sip2Client, timeout=0.3)
    client.patron_information(VALID)  # logged in
    server.faults.append("slow")
    started = time.monotonic()
    with pytest.raises(Sip2Timeout):
        client.patron_information(VALID)
    assert time.monotonic() - started < 0.3 + 0.4  # the server would have waited 10 s


def test_a_connection_dropped_while_idle_is_reopened_on_the_next_call(peer, clients):
    server = peer()
    checker = clients(server)
    assert checker.check(VALID) == allowed()
    server.drop_connections()
    assert checker.check(VALID) == allowed()
    assert server.connections == 2
    assert checker.breaker.state == "closed"


def test_a_connection_dropped_instead_of_a_reply_fails_that_call_only(peer, clients):
    server = peer()
    client = clients(server, cls=Sip2Client)
    server.faults.append("drop")
    with pytest.raises(Sip2Error, match="closed the connection"):
        client.patron_information(VALID)
    assert client.patron_information(VALID) == allowed()


def test_a_refused_login_is_an_error(peer, clients):
    server = peer(password="toinen")
    with pytest.raises(Sip2Error, match="login .* refused") as caught:
        clients(server, cls=Sip2Client).patron_information(VALID)
    assert "salasana-123" not in str(caught.value)


def test_nothing_listening_is_an_error(peer, clients):
    server = peer()
    client = clients(server, cls=Sip2Client)
    server.stop()
    with pytest.raises(Sip2Error, match="cannot connect"):
        client.patron_information(VALID)


# -- TLS ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, and the matching key, made with the openssl tool."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=omaovi test SIP2 server", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_peer(peer, certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return peer(ssl_context=context)


def test_tls_with_the_servers_certificate_trusted(tls_peer, clients, certificate):
    checker = clients(tls_peer, tls=True, tls_ca_file=str(certificate[0]))
    assert checker.check(VALID) == allowed()
    assert tls_peer.tls_versions == ["TLSv1.3"]


def test_tls_with_verification_off_still_encrypts(tls_peer, clients):
    assert clients(tls_peer, tls=True, tls_verify=False).check(VALID) == allowed()
    assert tls_peer.tls_versions == ["TLSv1.3"]


def test_a_tls_connection_dropped_while_idle_is_reopened(tls_peer, clients):
    checker = clients(tls_peer, tls=True, tls_verify=False)
    assert checker.check(VALID) == allowed()
    tls_peer.drop_connections()
    assert checker.check(VALID) == allowed()
    assert len(tls_peer.tls_versions) == 2


def test_an_untrusted_certificate_is_refused_without_falling_back_to_plain(tls_peer, clients):
    client = clients(tls_peer, cls=Sip2Client, tls=True)
    with pytest.raises(Sip2Error, match="TLS handshake .* failed"):
        client.patron_information(VALID)
    assert tls_peer.requests == []


def test_tls_to_a_plain_server_fails_and_sends_nothing_in_plain_text(peer, clients):
    plain = peer()
    client = clients(plain, cls=Sip2Client, tls=True, tls_verify=False, timeout=0.5)
    with pytest.raises(Sip2Error):
        client.patron_information(VALID)
    assert plain.requests == []
    assert b"salasana-123" not in plain.raw and VALID.encode() not in plain.raw


# -- the circuit breaker -------------------------------------------------------------------

def test_after_a_timeout_the_next_taps_are_answered_from_the_cache_at_once(peer, clients):
    server = peer()
    clock = FakeClock()
    checker = clients(server, timeout=0.3, clock=clock, breaker_cooldown=30)
    server.faults.append("slow")

    assert checker.check(VALID) is None
    assert checker.breaker.state == "open"
    asked, connections = server.patron_requests(), server.connections
    assert checker.check(VALID) is None
    assert checker.check(BLOCKED_STATUS) is None
    assert (server.patron_requests(), server.connections) == (asked, connections)

    clock.now += 30
    assert checker.breaker.state == "half_open"
    assert checker.check(VALID) == allowed()
    assert checker.breaker.state == "closed"


def test_the_breaker_opens_after_consecutive_failures(peer, clients):
    server = peer()
    checker = clients(server, breaker_failures=2, clock=FakeClock())
    server.faults.extend(["bad_checksum", "bad_checksum"])
    assert checker.check(VALID) is None
    assert checker.breaker.state == "closed"
    assert checker.check(VALID) is None
    assert checker.breaker.state == "open"
    asked = server.patron_requests()
    assert checker.check(VALID) is None
    assert server.patron_requests() == asked


def test_a_success_resets_the_failure_count(peer, clients):
    server = peer()
    checker = clients(server, breaker_failures=2, clock=FakeClock())
    server.faults.extend(["garble", None, "garble"])
    assert checker.check(VALID) is None
    assert checker.check(VALID) == allowed()
    assert checker.check(VALID) is None
    assert checker.breaker.state == "closed"


def test_a_failed_half_open_trial_opens_the_breaker_again():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooldown=10, clock=clock)
    calls = []

    def down():
        calls.append(1)
        raise TimeoutError

    with pytest.raises(TimeoutError):
        breaker.call(down)
    with pytest.raises(BreakerOpen):
        breaker.call(down)
    clock.now += 10
    with pytest.raises(TimeoutError):
        breaker.call(down)
    assert breaker.state == "open"
    assert len(calls) == 2


def test_only_one_half_open_trial_runs_at_a_time():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown=10, clock=clock)
    with pytest.raises(ValueError):
        breaker.call(lambda: (_ for _ in ()).throw(ValueError()))
    clock.now += 10

    def trial():
        with pytest.raises(BreakerOpen):
            breaker.call(lambda: "second")
        return "first"

    assert breaker.call(trial) == "first"
    assert breaker.state == "closed"


# -- privacy ---------------------------------------------------------------------------------

#: Longer than any port number, so it cannot turn up in a log line by chance.
PIN = "482619"


def test_no_personal_data_in_results_logs_or_errors(peer, clients, caplog):
    caplog.set_level(logging.DEBUG)
    server = peer()
    checker = clients(server, breaker_failures=10)
    results = [checker.check(card, pin=PIN) for card in (VALID, BLOCKED_STATUS, BRANCH_BLOCKED, CHILD, UNKNOWN)]
    errors = []
    for fault in ("garble", "bad_checksum", "bad_sequence"):
        server.faults.append(fault)
        with pytest.raises(Sip2Error) as caught:
            checker.client.patron_information(VALID)
        errors.append(str(caught.value))
    for patrons, profile in ((KOHA_SUOMI, "evergreen"), ({VALID: FakePatron(extra={"PA": "X", "PC": "AIKUINEN"})}, "koha-suomi")):
        with pytest.raises(Sip2Error) as caught:
            clients(peer(patrons), cls=Sip2Client, profile=profile).patron_information(VALID, pin=PIN)
        errors.append(str(caught.value))
    server.faults.append("garble")
    assert checker.check(VALID) is None

    seen = "\n".join([repr(results), caplog.text, *errors, repr(checker.client.config)])
    for value in [*PERSONAL.values(), VALID, BLOCKED_STATUS, PIN, "salasana-123"]:
        assert value not in seen
    assert "SIP2 check failed" in caplog.text
    assert all(isinstance(r, Sip2Result) for r in results)


def test_config_is_checked():
    base = dict(host="h", port=6001, username="u", password="p", institution="i")
    with pytest.raises(ValueError, match="unknown SIP2 profile 'generic'"):
        Sip2Config(**base, profile="generic")
    with pytest.raises(ValueError, match="unknown blocking_status fines"):
        Sip2Config(**base, profile="lenient", blocking_status=("fines",))
    with pytest.raises(ValueError, match="unknown card_number_form 'UPPER'"):
        Sip2Config(**base, profile="lenient", card_number_form="UPPER")
    assert replace(Sip2Config(**base, profile="lenient"), timeout=0.5).timeout == 0.5


def test_docs_name_every_profile_status_bit_and_config_key():
    text = (Path(__file__).parent.parent / "docs" / "sip2.md").read_text(encoding="utf-8")
    for name in [*PROFILES, *STATUS_BITS, *CARD_NUMBER_FORMS, BRANCH_BLOCK]:
        assert f"`{name}`" in text
    keys = {f.name for f in fields(Sip2Config)} - {"password"} | {"password_file"}
    for key in keys:
        assert f"| `{key}` |" in text


# -- the card number as the library system knows it ----------------------------------

@pytest.mark.parametrize(
    "form, sent",
    [("as_read", "00aB12"), ("upper", "00AB12"), ("lower", "00ab12"), ("strip_leading_zeros", "aB12")],
)
def test_the_card_number_is_sent_in_the_configured_form(peer, clients, form, sent):
    # The test server looks ids up case-sensitively, as some library systems do.
    server = peer({sent: FakePatron(extra={"PA": "0", "PC": "AIKUINEN"})})

    assert clients(server, card_number_form=form).check("00aB12") == allowed()
    assert server.requests[-1].patron_identifier == sent


def test_the_default_sends_the_number_as_read_not_upper_cased(peer, clients):
    server = peer({"abc123": FakePatron(extra={"PA": "0", "PC": "AIKUINEN"})})

    assert clients(server).check("abc123") == allowed()
    assert server.requests[-1].patron_identifier == "abc123"


# -- replies shaped as Koha's and Evergreen's SIP servers build them ---------------------

KOHA_PATRONS = {
    VALID: FakePatron(extra={"PC": "AIKUINEN"}),
    BLOCKED_STATUS: FakePatron(status="Y" + " " * 13, extra={"PC": "AIKUINEN"}),
    CHILD: FakePatron(extra={"PC": "LAPSI"}),
    # The reader typed it in lower case; Koha's database holds it upper-cased and
    # its MySQL lookup ignores case, so the reply echoes the stored form.
    "abc123": FakePatron(extra={"PC": "AIKUINEN"}, stored_as="ABC123"),
}


def test_stock_koha_without_pa_is_read_by_the_koha_profile(peer, clients):
    checker = clients(peer(KOHA_PATRONS, shape="koha", case_insensitive=True), profile="koha")

    assert checker.check(VALID) == allowed()
    assert checker.check(VALID, pin="1234") == allowed(pin_ok=True)
    assert checker.check(BLOCKED_STATUS) == denied("charge_privileges_denied")
    assert checker.check(CHILD) == replace(denied(None), class_refused=True)
    assert checker.check("abc123") == allowed()
    # Koha sends no CQ for an unknown card, even when a PIN was sent: still an answer.
    assert checker.check(UNKNOWN, pin="1234") == replace(denied(None), known=False, pin_ok=False)
    assert checker.breaker.state == "closed"


def test_a_koha_suomi_profile_on_stock_koha_is_an_error_naming_pa(peer, clients):
    server = peer(KOHA_PATRONS, shape="koha")
    with pytest.raises(Sip2Error, match="field PA is missing"):
        clients(server, cls=Sip2Client).patron_information(VALID)


def test_koha_suomi_pa_is_the_branch_block_in_koha_s_reply_shape(peer, clients):
    server = peer({VALID: FakePatron(extra={"PC": "AIKUINEN", "PA": "1"})}, shape="koha")
    assert clients(server).check(VALID) == denied("branch_block")


def test_evergreen_pa_is_the_expiry_date_and_may_be_missing(peer, clients):
    server = peer({
        VALID: FakePatron(extra={"PA": "20270531", "PC": "AIKUINEN"}),
        "10000010": FakePatron(extra={"PC": "AIKUINEN"}),  # no expiry date: Evergreen leaves PA out
    }, shape="evergreen")
    checker = clients(server, profile="evergreen")

    assert checker.check(VALID, pin="0000") == allowed(valid_until=dt.date(2027, 5, 31), pin_ok=False)
    assert checker.check("10000010") == allowed()
    assert checker.check(UNKNOWN) == replace(denied(None), known=False)


def test_a_missing_class_refuses_the_class_instead_of_failing(peer, clients):
    server = peer({VALID: FakePatron(extra={"PA": "0"})})
    assert clients(server).check(VALID) == replace(denied(None), class_refused=True)


def test_the_lenient_profile_takes_n_in_the_status_as_not_set(peer, clients):
    # pysip2 refuses such a status, so the reply is built raw, in Koha's shape.
    server = peer({VALID: FakePatron(status="N" * 14), BLOCKED_STATUS: FakePatron(status="Y" + "N" * 13)}, shape="koha")
    checker = clients(server, profile="lenient", allowed_classes=())

    assert checker.check(VALID) == allowed()
    assert checker.check(BLOCKED_STATUS) == denied("charge_privileges_denied")
    with pytest.raises(Sip2Error, match="patron status"):
        clients(server, cls=Sip2Client, profile="koha", allowed_classes=()).patron_information(VALID)


def test_the_notes_say_how_the_profile_read_each_field_without_personal_values(peer, clients):
    server = peer(KOHA_PATRONS, shape="koha")
    notes: list[str] = []

    clients(server, cls=Sip2Client, profile="koha").patron_information(BLOCKED_STATUS, pin="1234", notes=notes)

    assert notes == [
        "CQ: PIN right",
        "BL: Y, a patron",
        "status: charge_privileges_denied; charge_privileges_denied blocks",
        "PC: 'AIKUINEN' in allowed_classes",
        "result: refused: charge_privileges_denied",
    ]


def test_the_config_offers_exactly_the_profiles_the_client_knows():
    """The config model names the profiles so that the door needs no SIP2 client to read its file."""
    from device.config import SIP2_PROFILE_NAMES

    assert tuple(PROFILES) == SIP2_PROFILE_NAMES
