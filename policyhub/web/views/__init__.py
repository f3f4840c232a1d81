"""PolicyHub's pages, one module per area; each module's `urlpatterns` are its routes."""
