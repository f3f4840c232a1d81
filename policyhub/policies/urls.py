from django.urls import path

from policyhub.policies import views

urlpatterns = [
    path("", views.home, name="home"),
]
