from django.urls import path

from conversations import views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("c/<uuid:conversation_id>", views.chat_page, name="chat-conversation"),
    path("c/send", views.send, name="chat-send"),
    path("c/<uuid:conversation_id>/rename", views.rename, name="chat-rename"),
    path("c/<uuid:conversation_id>/delete", views.delete, name="chat-delete"),
    path("c/turns/<uuid:job_id>", views.turn_answer, name="chat-turn"),
    path("c/turns/<uuid:job_id>/retry", views.retry, name="chat-retry"),
]
