from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.utils.cache import patch_cache_control
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from gallery import renditions, storage
from gallery.models import Image
from nanoclone import databases
from nanoclone.api.auth import BearerTokenAuthentication, OpenAPIAuthentication
from nanoclone.api.envelope import ERROR_ENVELOPE, enveloped, ok, owner
from nanoclone.api.image_serializers import ImageSerializer
from nanoclone.api.pagination import KeysetPagination


@extend_schema_view(
    get=extend_schema(
        parameters=[
            OpenApiParameter("conversation_id", OpenApiTypes.UUID, description="Only this conversation's images.")
        ],
        responses={200: ImageSerializer(many=True), 400: ERROR_ENVELOPE},
    )
)
class ImageList(generics.ListAPIView):
    serializer_class = ImageSerializer
    pagination_class = KeysetPagination

    def get_queryset(self) -> QuerySet[Image]:
        images = Image.objects.filter(user=owner(self.request), role=Image.Role.OUTPUT)
        if conversation := self.request.query_params.get("conversation_id"):
            try:
                images = images.filter(conversation_id=uuid.UUID(conversation))
            except ValueError as error:
                raise ValidationError(
                    {"conversation_id": f"'{conversation}' is not a conversation id (a UUID)."}
                ) from error
        return images


@extend_schema_view(
    get=extend_schema(responses={200: enveloped("ImageEnvelope", ImageSerializer()), 404: ERROR_ENVELOPE})
)
class ImageDetail(generics.RetrieveAPIView):
    serializer_class = ImageSerializer

    def get_queryset(self) -> QuerySet[Image]:
        return Image.objects.filter(user=owner(self.request))

    def retrieve(self, request: Request, *args: object, **kwargs: object) -> Response:
        return ok(self.get_serializer(self.get_object()).data)


def _requester(request: HttpRequest) -> User | None:
    """The user behind a file request: session, or the same tokens as the API."""
    if request.user.is_authenticated:
        return request.user
    drf_request = Request(request)
    for authenticator in (BearerTokenAuthentication(), SessionAuthentication(), OpenAPIAuthentication()):
        found = authenticator.authenticate(drf_request)
        if found:
            return found[0]
    return None


def _serve(request: HttpRequest, image: Image, name: str, content_type: str, variant: str = "") -> HttpResponseBase:
    """A stored file, its access already checked: streamed, or (NANOCLONE_MEDIA_REDIRECT, on a bucket)
    a redirect to a short-lived URL the store serves it at. A missing file is a 404, a store out of
    reach a 503."""
    etag = f'"{image.sha256}{variant}"'
    download = f"nanoclone-{image.id}.{image.extension}" if request.GET.get("download") else ""
    # Weak comparison, as RFC 9110 asks for If-None-Match (a proxy may have added W/).
    known = {tag.removeprefix("W/") for tag in parse_etags(request.headers.get("If-None-Match", ""))}
    try:
        if etag in known or "*" in known:
            response: HttpResponseBase = HttpResponseNotModified()
        elif url := storage.presigned_url(name, download):
            response = HttpResponseRedirect(url)
            # The URL lives NANOCLONE_MEDIA_URL_SECONDS: no cache may keep the redirect longer.
            patch_cache_control(response, private=True, max_age=max(0, settings.MEDIA_URL_SECONDS - 30))
            return response
        else:
            response = FileResponse(storage.open_file(name), content_type=content_type)
            if download:
                response["Content-Disposition"] = f'attachment; filename="{download}"'
    except storage.MissingFile as missing:
        raise Http404("Image file is missing.") from missing
    except storage.StoreUnavailable:
        return _store_unavailable()
    response["ETag"] = etag
    # Content-addressed, so the bytes behind a URL never change; private because access is checked.
    patch_cache_control(response, private=True, max_age=31536000, immutable=True)
    return response


def _store_unavailable() -> HttpResponse:
    return HttpResponse(
        storage.StoreUnavailable.message,
        status=503,
        content_type="text/plain; charset=utf-8",
        headers={"Retry-After": str(databases.RETRY_AFTER_SECONDS)},
    )


def _authorized(request: HttpRequest, image_id: str) -> Image | HttpResponse:
    """The image when the request may read it: a valid signed URL, or its owner's token/session."""
    image = get_object_or_404(Image, pk=image_id)
    stamp, signature = request.GET.get("ts"), request.GET.get("sig")
    if stamp and signature and image.check_signature(stamp, signature):
        return image
    try:
        user = _requester(request)
    except AuthenticationFailed:
        user = None
    if user is None:
        return HttpResponse("Authentication required.", status=401, headers={"WWW-Authenticate": "Bearer"})
    if image.user_id != user.pk:
        raise Http404("No such image.")
    return image


def image_file(request: HttpRequest, image_id: str, extension: str) -> HttpResponseBase:
    image = _authorized(request, image_id)
    return image if isinstance(image, HttpResponse) else _serve(request, image, image.file, image.mime_type)


def image_thumbnail(request: HttpRequest, image_id: str) -> HttpResponseBase:
    image = _authorized(request, image_id)
    if isinstance(image, HttpResponse):
        return image
    try:
        storage.ensure_thumbnail(image.file, image.thumbnail)
    except storage.MissingFile as missing:
        raise Http404("Image file is missing.") from missing
    except storage.StoreUnavailable:
        return _store_unavailable()
    return _serve(request, image, image.thumbnail, "image/webp", "-t")


def image_display(request: HttpRequest, image_id: str) -> HttpResponseBase:
    """The display rendition (gallery.renditions): what the chat and the viewer show."""
    image = _authorized(request, image_id)
    if isinstance(image, HttpResponse):
        return image
    try:
        renditions.ensure_display(image.file)
    except storage.MissingFile as missing:
        raise Http404("Image file is missing.") from missing
    except storage.StoreUnavailable:
        return _store_unavailable()
    return _serve(request, image, storage.display_of(image.file), "image/webp", "-d")
