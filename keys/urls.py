from django.urls import path

from keys import views

urlpatterns = [
    path("keys", views.keys_page, name="keys"),
    path("keys/add", views.add, name="keys-add"),
    path("keys/<int:key_id>/toggle", views.toggle, name="keys-toggle"),
    path("keys/<int:key_id>/limit", views.set_limit, name="keys-limit"),
    path("keys/<int:key_id>/test", views.retest, name="keys-test"),
    path("keys/<int:key_id>/delete", views.delete, name="keys-delete"),
]
