"""`python -m policyhub_agent`: the same entry point as the console script."""

from policyhub_agent.cli import main

raise SystemExit(main())
