"""The keys page (staff only): the pool at a glance, and the operator's everyday actions on it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from keys import checks, credentials, pacing, pool, usage
from keys.catalogue import MODELS
from keys.models import ApiKey, ModelNotice, QuotaLimit
from nanoclone.api.key_serializers import ApiKeyCreateSerializer
from nanoclone.pages import PageRequest

View = Callable[..., HttpResponse]


def staff_only(view: View) -> View:
    @login_required
    @wraps(view)
    def wrapped(request: PageRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("The keys page is for staff accounts.")
        return view(request, *args, **kwargs)

    return wrapped


@staff_only
@require_GET
def keys_page(request: PageRequest) -> HttpResponse:
    keys = list(ApiKey.objects.all())
    rests = pool.rests_by_key(keys)
    for key in keys:
        key.current_rests = rests[key.pk]  # type: ignore[attr-defined]
    # Keys of one project share its quotas: the table groups them.
    groups = [(summary, [key for key in keys if key.project == summary.project]) for summary in pool.projects(keys)]
    return render(
        request,
        "keys/keys.html",
        {
            "keys": keys,
            "groups": groups,
            "usable": pool.usable_keys().count(),
            "chart": usage.daily_chart(keys),
            "usage_panels": usage.panels(),
            "form": request.session.pop("key_form", {}),
            "kinds": ApiKey.Kind.choices,
            "notices": ModelNotice.objects.order_by("model"),
            "limits": QuotaLimit.objects.select_related("key").order_by("project", "key_id", "model", "period"),
            "projects": sorted({key.project for key in keys if key.project}),
            "models": MODELS,
            "periods": [(value, label) for value, label in QuotaLimit.Period.choices if value in pacing.SETTABLE],
        },
    )


SERVICE_ACCOUNT_FILE_BYTES = 20_000  # a service account's JSON key is about 2.4 KB


@staff_only
@require_POST
def add(request: PageRequest) -> HttpResponse:
    kind = request.POST.get("kind") or ApiKey.Kind.AI_STUDIO
    secret = request.POST.get("key", "")
    uploaded = request.FILES.get("service_account")
    if kind == ApiKey.Kind.VERTEX_SERVICE_ACCOUNT and uploaded is not None:
        secret = uploaded.read(SERVICE_ACCOUNT_FILE_BYTES + 1).decode(errors="replace")
    data = {
        "kind": kind,
        "key": secret,
        "label": request.POST.get("label", ""),
        "baseUrl": request.POST.get("base_url", ""),
        "project": request.POST.get("project", ""),
        "location": request.POST.get("location", ""),
        "proxy": request.POST.get("proxy", ""),
    }
    if request.POST.get("daily_limit", "").strip():
        data["dailyLimit"] = request.POST["daily_limit"].strip()
    form = ApiKeyCreateSerializer(data=data)
    if not form.is_valid():
        names = {"key": "Key", "dailyLimit": "Daily limit", "baseUrl": "Base URL", "non_field_errors": "Key"}
        for field, errors in form.errors.items():
            messages.error(request, f"{names.get(field, field.title())}: {' '.join(str(error) for error in errors)}")
        # Everything but the secret (and the proxy, which may hold a password) comes back into the form.
        request.session["key_form"] = {
            name: data[field]
            for name, field in (
                ("kind", "kind"),
                ("label", "label"),
                ("base_url", "baseUrl"),
                ("project", "project"),
                ("location", "location"),
            )
        }
        return redirect("keys")
    key = form.save()
    messages.success(request, f"Added {key.masked} ({key.get_kind_display()}).")
    return redirect("keys")


def _key(key_id: int) -> ApiKey:
    return get_object_or_404(ApiKey, pk=key_id)


@staff_only
@require_POST
def toggle(request: PageRequest, key_id: int) -> HttpResponse:
    key = _key(key_id)
    enable = not key.enabled
    changes: dict[str, Any] = {"enabled": enable}
    if enable:
        # Re-enabling is the operator's "try it again": an earlier invalid verdict is dropped too.
        changes |= {"invalid": False, "invalid_reason": "", "consecutive_failures": 0}
    ApiKey.objects.filter(pk=key.pk).update(**changes)
    messages.success(request, f"{'Enabled' if enable else 'Disabled'} {key.masked}.")
    return redirect("keys")


@staff_only
@require_POST
def set_limit(request: PageRequest, key_id: int) -> HttpResponse:
    key = _key(key_id)
    value = request.POST.get("daily_limit", "").strip()
    if not value.isdigit() or int(value) > 1_000_000:
        messages.error(request, "Daily limit: enter a whole number between 0 and 1,000,000.")
        return redirect("keys")
    ApiKey.objects.filter(pk=key.pk).update(daily_limit=int(value))
    messages.success(request, f"Daily limit of {key.masked} is now {int(value)}.")
    return redirect("keys")


@staff_only
@require_POST
def set_project(request: PageRequest, key_id: int) -> HttpResponse:
    key = _key(key_id)
    if key.kind == ApiKey.Kind.VERTEX_SERVICE_ACCOUNT:
        messages.error(request, f"{key.masked} is in project {key.project}, the one its key names.")
        return redirect("keys")
    project = " ".join(request.POST.get("project", "").split())[:100]
    ApiKey.objects.filter(pk=key.pk).update(project=project)
    messages.success(
        request, f"{key.masked} is now in project {project}." if project else f"{key.masked} has no project."
    )
    return redirect("keys")


@staff_only
@require_POST
def set_quota_limit(request: PageRequest) -> HttpResponse:
    """An operator's limit on a key or a project: per minute, per day, or of tokens enqueued in
    batches (blank: take it away)."""
    scope, model, period = (request.POST.get(name, "") for name in ("scope", "model", "period"))
    text = request.POST.get("limit", "").strip()
    kind, _, name = scope.partition(":")
    key = _key(int(name)) if kind == "key" and name.isdigit() else None
    project = name if kind == "project" and ApiKey.objects.filter(project=name).exclude(project="").exists() else ""
    if (key is None and not project) or model not in ("", *MODELS) or period not in pacing.SETTABLE:
        messages.error(request, "Choose a key or project, a model (or each model) and per minute or per day.")
        return redirect("keys")
    if text and not (text.isdigit() and int(text) <= 1_000_000_000):  # token limits run to millions
        messages.error(request, "A limit is a whole number from 0 to 1,000,000,000 (blank: none).")
        return redirect("keys")
    pacing.set_operator_limit(key.pk if key else None, project, model, period, int(text) if text else None)
    what = f"{model or 'each model'} {QuotaLimit.Period(period).label} on {f'project {project}' if project else key}"
    messages.success(request, f"Limit of {what}: {text}." if text else f"No operator's limit of {what}.")
    return redirect("keys")


@staff_only
@require_POST
def set_proxy(request: PageRequest, key_id: int) -> HttpResponse:
    key = _key(key_id)
    try:
        fields = ApiKey.proxy_fields(request.POST.get("proxy", ""))
    except credentials.CredentialError as error:
        messages.error(request, f"Proxy of {key.masked}: {error}")
        return redirect("keys")
    # The route changed: whatever the last route said of the credential's reach no longer holds.
    ApiKey.objects.filter(pk=key.pk).update(**fields, unreachable=False)
    shown = fields["proxy_shown"]
    messages.success(request, f"{key.masked} now calls through {shown}." if shown else f"{key.masked} calls directly.")
    return redirect("keys")


@staff_only
@require_POST
def sync_models(request: PageRequest) -> HttpResponse:
    """Ask Gemini's models.list with a usable key and say how the model catalogue differs."""
    key = checks.catalogue_key()
    if key is None:
        messages.error(request, "No usable AI Studio key to ask Gemini with.")
        return redirect("keys")
    try:
        result = checks.sync_models(key)
    except pool.GeminiError as error:
        messages.error(request, f"models.list with {key.masked} failed: {error}")
        return redirect("keys")
    (messages.error if result.unseen or result.unknown else messages.success)(
        request, f"Models for {key.masked}: {result.summary}."
    )
    return redirect("keys")


@staff_only
@require_POST
def retest(request: PageRequest, key_id: int) -> HttpResponse:
    result = checks.retest(_key(key_id))
    (messages.success if result.ok else messages.error)(request, result.message)
    return redirect("keys")


@staff_only
@require_POST
def delete(request: PageRequest, key_id: int) -> HttpResponse:
    key = _key(key_id)
    key.delete()
    messages.success(request, f"Deleted {key.masked}.")
    return redirect("keys")
