from django.urls import path

from gallery import views

urlpatterns = [
    path("gallery", views.gallery_page, name="gallery"),
    path("gallery/<uuid:image_id>", views.image_page, name="gallery-image"),
    path("gallery/<uuid:image_id>/favorite", views.favorite, name="gallery-favorite"),
    path("gallery/<uuid:image_id>/delete", views.delete, name="gallery-delete"),
]
