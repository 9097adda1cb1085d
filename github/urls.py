from django.urls import path

from . import views, webhook

urlpatterns = [
    path("webhooks/github/", webhook.github_webhook, name="github-webhook"),
    path("deliveries/", views.delivery_list, name="deliveries"),
    path("deliveries/<int:pk>/retry/", views.delivery_retry, name="delivery-retry"),
]
