"""/health: open, for load balancers and the jobs API document's clients; `manage.py health` for
container health checks."""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from gallery import storage
from keys import pool
from keys.catalogue import MODELS, default_model
from keys.models import ApiKey


def health(request: HttpRequest) -> JsonResponse:
    """Open health check: "degraded" is still HTTP 200, "unhealthy" a 503."""
    body = report()
    return JsonResponse(body, status=503 if body["status"] == "unhealthy" else 200)


def report() -> dict[str, Any]:
    """The database, the media store, the background cluster and the key pool.

    `status` and `features` follow the jobs API document; "degraded" means the app answers but jobs
    would wait (no cluster alive) or fail (no usable key); "unhealthy" that the database or the
    store doesn't answer.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except DatabaseError as error:
        database = f"error: {error}"
    if database != "ok":
        return {"status": "unhealthy", "features": _features(False), "checks": {"database": database}}
    queue = _queue()
    all_keys = list(ApiKey.objects.all())
    usable_kinds = Counter(pool.usable_keys(default_model().id).values_list("kind", flat=True))
    usable = usable_kinds.total()
    rests = pool.rests_by_key(all_keys)
    total_kinds = Counter(key.kind for key in all_keys)
    keys = {
        "usable": usable,  # for the default model
        "total": len(all_keys),
        # AI Studio keys, Vertex AI express keys and service accounts: how many, and how many usable.
        "by_kind": {kind: {"total": total_kinds[kind], "usable": usable_kinds[kind]} for kind in ApiKey.Kind.values},
        "usable_by_model": {model: pool.usable_keys(model).count() for model in MODELS},
        # Each model resting on a key or a whole project, why (Google's quota id) and until when.
        "rests": [
            {"model": r.model, "on": r.project or f"key {r.key_id}", "why": r.why, "until": r.until.isoformat()}
            for r in {rest.pk: rest for key_rests in rests.values() for rest in key_rests}.values()
        ],
        "projects": [
            {"project": p.project or None, "keys": p.keys, "used_today": p.used_today, "left_today": p.left_today}
            for p in pool.projects(all_keys)
        ],
    }
    store = {"kind": settings.MEDIA_STORE, "status": storage.check()}
    if store["status"] != "ok":  # nothing can be stored or shown: as unhealthy as a database down
        return {"status": "unhealthy", "features": _features(False), "checks": {"database": database, "store": store}}
    healthy = queue["alive"] and usable > 0
    return {
        "status": "healthy" if healthy else "degraded",
        "features": _features(usable > 0),
        "checks": {"database": database, "store": store, "queue": queue, "keys": keys},
    }


def _features(image_generation: bool) -> dict[str, bool]:
    # The jobs API document lists its sibling services too; NanoClone only makes images.
    return {"book_generation": False, "blog_generation": False, "image_generation": image_generation}


def _stats() -> list[Any]:
    """The heartbeats of the django-q2 clusters alive: each publishes a Stat every half second that
    expires in 3 s. Raises what the broker raises (a Redis that is down)."""
    from django_q.brokers import get_broker
    from django_q.status import Stat

    return list(Stat.get_all(get_broker()))


def _queue() -> dict[str, object]:
    """Is a django-q2 cluster alive?"""
    broker = "redis" if settings.REDIS_URL else "orm"
    try:
        stats = _stats()
    except Exception as error:  # a Redis that is down must show up here, not as a 500
        return {"broker": broker, "alive": False, "clusters": 0, "workers": 0, "error": str(error)}
    return {
        "broker": broker,
        "alive": bool(stats),
        "clusters": len(stats),
        "workers": sum(len(stat.workers) for stat in stats),
    }


def cluster_alive_here() -> bool:
    """Does a cluster on this host (this container) publish its heartbeat? django-q2 names each
    cluster's host in its Stat, which /health doesn't show (it is open)."""
    try:
        stats = _stats()
    except Exception:  # a Redis that is down: no heartbeat can be read, so none is alive
        return False
    return any(stat.host == socket.gethostname() for stat in stats)
