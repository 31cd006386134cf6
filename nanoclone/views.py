from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse


def health(request: HttpRequest) -> JsonResponse:
    """Open health check: the app answers and its database does."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception as error:
        database = f"error: {error}"
    healthy = database == "ok"
    return JsonResponse(
        {"status": "healthy" if healthy else "unhealthy", "checks": {"database": database}},
        status=200 if healthy else 503,
    )


def api_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(
        {
            "success": False,
            "data": None,
            "error": {"code": "not_found", "message": f"No endpoint at {request.path}."},
        },
        status=404,
    )
