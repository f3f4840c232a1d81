"""A real OpenID Connect provider for the single sign-on browser test: a small Django project of
its own with django-oauth-toolkit, run in its own process (`serve.py`). Never part of PolicyHub."""
