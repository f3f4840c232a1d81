"""One module per provider kind; `providers.catalogue` registers an instance of each."""
