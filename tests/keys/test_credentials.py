"""Google credentials of three kinds in one pool, each through its own proxy.

The real google-genai (vertexai=True) and google-auth talk to the emulator's Vertex AI paths and
its OAuth token endpoint, which checks the JWT a service account signs; calls go through real
proxies on loopback (Debian's tinyproxy and microsocks), whose logs prove they went through them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from keys import catalogue, credentials, pool
from keys.gemini import client as gemini
from keys.gemini.emulator import GeminiEmulator
from keys.models import ApiKey, KeyRest, Price, UsageRecord
from tests.keys.proxies import RunningProxy, microsocks, tinyproxy

pytestmark = pytest.mark.django_db

MODEL = "gemini-nano-banana-2.1"
SA = ApiKey.Kind.VERTEX_SERVICE_ACCOUNT
EXPRESS = ApiKey.Kind.VERTEX_EXPRESS


def generate(lease: pool.Lease, prompt: str = "a lighthouse") -> gemini.GeminiAnswer:
    return gemini.generate(lease, MODEL, [gemini.Turn("user", prompt)], gemini.Options())


def served(caller: str = "test") -> pool.Lease:
    """One generation through the pool, reported as the pipeline reports it; the lease it used."""
    lease = pool.acquire(MODEL, caller=pool.Caller(door=caller))
    try:
        answer = generate(lease)
    except pool.GeminiError as error:
        pool.report(lease, error)
        raise
    pool.report(lease, usage=pool.CallUsage(images=len(answer.images)))
    return lease


@pytest.fixture
def service_account(emu: GeminiEmulator) -> Iterator[dict[str, Any]]:
    emu.vertex.token_seconds = 3600
    yield emu.vertex.service_account("proj-alpha")


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[tuple[RunningProxy, RunningProxy, RunningProxy]]:
    with tinyproxy(tmp_path) as http, microsocks(tmp_path) as socks, tinyproxy(tmp_path, "carol", "pw-c") as third:
        yield http, socks, third


def emulator_address(emu: GeminiEmulator) -> str:
    return emu.url.removeprefix("http://")


# --- each kind on its own ------------------------------------------------------------------------


def test_an_express_key_calls_vertex_ai_through_google_genai(add_key: Any, emu: GeminiEmulator) -> None:
    add_key("emu-express-0001", kind=EXPRESS)
    lease = served()
    assert lease.kind == EXPRESS
    (call,) = emu.requests
    assert call["api"] == "vertex" and call["project"] == "" and call["key_suffix"] == "0001" and call["status"] == 200


def test_a_service_account_signs_in_once_and_calls_its_project(
    add_key: Any, emu: GeminiEmulator, service_account: dict[str, Any]
) -> None:
    key = add_key(json.dumps(service_account), kind=SA)
    assert (key.project, key.location, key.masked) == ("proj-alpha", "global", service_account["client_email"])
    before = emu.vertex.tokens_issued
    served()
    served()
    # google-auth's token is kept until it expires: one sign-in for both calls.
    assert emu.vertex.tokens_issued == before + 1
    assert [(call["api"], call["project"], call["status"]) for call in emu.requests] == [
        ("vertex", "proj-alpha", 200),
        ("vertex", "proj-alpha", 200),
    ]


def test_a_token_google_no_longer_takes_is_refreshed_once_and_the_call_goes_on(
    add_key: Any, emu: GeminiEmulator, service_account: dict[str, Any]
) -> None:
    key = add_key(json.dumps(service_account), kind=SA)
    served()
    before = emu.vertex.tokens_issued
    emu.vertex.expire_tokens()  # revoked early: the client still believes in its token
    served()
    assert emu.vertex.tokens_issued == before + 1
    assert [call["status"] for call in emu.requests] == [200, 401, 200]
    key.refresh_from_db()
    assert key.status == ApiKey.Status.ACTIVE


def test_a_disabled_service_account_is_set_aside_with_googles_reason(
    add_key: Any, emu: GeminiEmulator, service_account: dict[str, Any]
) -> None:
    key = add_key(json.dumps(service_account), kind=SA)
    served()
    emu.vertex.disable(service_account["client_email"])
    emu.vertex.expire_tokens()
    with pytest.raises(pool.KeyRejected, match="Invalid grant: account not found"):
        served()
    key.refresh_from_db()
    assert key.status == ApiKey.Status.INVALID
    assert "Invalid grant: account not found" in key.invalid_reason


def test_vertex_ais_busy_capacity_rests_the_model_on_that_project_for_seconds(
    add_key: Any, service_account: dict[str, Any]
) -> None:
    from keys.gemini.emulator.vertex import BUSY

    key = add_key(json.dumps(service_account), kind=SA)
    busy = gemini.answers.sorted_error(gemini.errors.APIError(429, BUSY.body))
    assert isinstance(busy, pool.KeyExhausted) and busy.capacity and not busy.quota_id
    pool.report(pool.Lease.of(key, MODEL), busy)
    rest = KeyRest.objects.get()
    assert (rest.project, rest.model, rest.kind) == ("proj-alpha", MODEL, KeyRest.Kind.CAPACITY)
    assert rest.until - timezone.now() < dt.timedelta(seconds=20)


def test_the_emulator_answers_a_spent_quota_on_vertex_ai_in_vertex_ais_words(add_key: Any, emu: GeminiEmulator) -> None:
    add_key("emu-quota1-vx", kind=EXPRESS)
    served()
    with pytest.raises(pool.KeyExhausted, match="error-code-429"):
        served()
    rest = KeyRest.objects.get()
    assert rest.kind == KeyRest.Kind.CAPACITY and "error-code-429" in rest.detail


# --- proxies --------------------------------------------------------------------------------------


def test_each_kind_calls_through_its_own_proxy_and_a_service_account_signs_in_through_it(
    add_key: Any, emu: GeminiEmulator, service_account: dict[str, Any], proxies: tuple[RunningProxy, ...]
) -> None:
    http, socks, third = proxies
    add_key("emu-ok-studio", proxy=http.url)
    add_key("emu-express-proxied", kind=EXPRESS, proxy=socks.url)
    add_key(json.dumps(service_account), kind=SA, proxy=third.url)
    kinds = {served().kind for _ in range(3)}  # least used first: each credential once
    assert kinds == {ApiKey.Kind.AI_STUDIO, EXPRESS, SA}
    address = emulator_address(emu)
    assert http.reached(address) and socks.reached(address) and third.reached(address)
    assert "/token" in third.seen()  # the service account's sign-in went through its proxy too
    assert "/token" not in http.seen()


def test_a_proxy_that_cant_be_reached_makes_the_credential_unreachable_not_invalid(
    add_key: Any, emu: GeminiEmulator, service_account: dict[str, Any]
) -> None:
    from tests.conftest import free_port

    nowhere = f"socks5://u:p@127.0.0.1:{free_port()}"
    express = add_key("emu-ok-behind-nothing", kind=EXPRESS, proxy=nowhere)
    account = add_key(json.dumps(service_account), kind=SA, proxy=f"http://u:p@127.0.0.1:{free_port()}")
    for _ in range(2):
        with pytest.raises(pool.KeyUnreachable):
            served()
    for key in (express, account):
        key.refresh_from_db()
        assert key.status == ApiKey.Status.UNREACHABLE and not key.invalid


def test_a_proxy_is_stored_encrypted_and_shown_without_its_password(add_key: Any) -> None:
    key = add_key("emu-ok-shown", proxy="socks5h://bob:hunter2@proxy.example:1080")
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert all("hunter2" not in str(value) for value in row.values())
    assert key.proxy_shown == "socks5h://bob@proxy.example:1080"
    assert key.proxy == "socks5h://bob:hunter2@proxy.example:1080"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://proxy.example:21", "starts with"),
        ("http://proxy.example", "host and port"),
        ("http://proxy.example:99999", "port"),
        ("http://proxy.example:3128/path", "no path"),
    ],
)
def test_a_proxy_url_that_cant_work_is_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(credentials.CredentialError, match=says):
        credentials.proxy(url)


def test_several_credentials_share_one_proxy_and_its_refused_location(add_key: Any) -> None:
    shared = "http://u:one@127.0.0.1:3128"
    first = add_key("emu-ok-share1", proxy=shared)
    second = add_key("emu-ok-share2", proxy="http://u:two@127.0.0.1:3128")  # same route, other password
    direct = add_key("emu-ok-direct")
    route = pool.same_route(pool.Lease.of(first))
    assert first.pk in route and second.pk in route and direct.pk not in route


# --- one pool across kinds ------------------------------------------------------------------------


def test_a_spent_ai_studio_key_fails_over_to_a_service_account(
    add_key: Any, emu: GeminiEmulator, service_account: dict[str, Any]
) -> None:
    add_key("emu-429-studio")
    add_key(json.dumps(service_account), kind=SA)
    first = pool.acquire(MODEL, caller=pool.Caller(door="test"))
    assert first.kind == ApiKey.Kind.AI_STUDIO  # added first, least recently used
    with pytest.raises(pool.KeyExhausted) as spent:
        generate(first)
    pool.report(first, spent.value)
    second = served()
    assert second.kind == SA
    assert list(UsageRecord.objects.order_by("id").values_list("kind", "outcome")) == [
        (ApiKey.Kind.AI_STUDIO, "429"),
        (SA, "image"),
    ]


def test_a_model_vertex_ai_doesnt_serve_is_never_sent_to_a_vertex_credential(
    add_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(catalogue.MODELS, MODEL, replace(catalogue.MODELS[MODEL], vertex_id=None))
    add_key("emu-express-only", kind=EXPRESS)
    with pytest.raises(pool.NoUsableKey):
        pool.acquire(MODEL)
    studio = add_key("emu-ok-studio2")
    assert pool.acquire(MODEL).key_id == studio.pk


def test_vertex_ai_calls_cost_vertex_ais_price_where_the_table_has_one(
    add_key: Any, emu: GeminiEmulator, default_prices: None
) -> None:
    add_key("emu-express-priced", kind=EXPRESS)
    gemini_api = Price.objects.get(model=MODEL, resolution="1K", tier="standard", platform="")
    served()
    assert UsageRecord.objects.get().cost == gemini_api.per_image  # no Vertex AI price: the Gemini API's
    Price.objects.create(
        model=MODEL, resolution="1K", tier="standard", platform=Price.Platform.VERTEX, per_image=Decimal("0.05")
    )
    served()
    assert UsageRecord.objects.order_by("-id").first().cost == Decimal("0.050000")  # type: ignore[union-attr]


# --- what an operator pastes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pasted", "says"),
    [
        ("not json", "JSON file Google Cloud downloads"),
        ('{"type": "authorized_user"}', '"type" must be "service_account"'),
        ('{"type": "service_account", "project_id": "p"}', "lacks private_key_id, private_key, client_email"),
    ],
)
def test_a_service_account_key_that_cant_sign_in_is_refused_with_the_reason(pasted: str, says: str) -> None:
    with pytest.raises(credentials.CredentialError, match=says):
        ApiKey.create(pasted, kind=SA)


def test_the_same_service_account_key_is_one_credential_however_it_is_formatted(
    service_account: dict[str, Any],
) -> None:
    first = ApiKey.create(json.dumps(service_account), kind=SA)
    assert credentials.service_account(json.dumps(service_account, indent=2)).identity == (
        f"{first.masked}/{service_account['private_key_id']}"
    )
