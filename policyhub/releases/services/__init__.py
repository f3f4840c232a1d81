"""Writes of the releases app, one module per concern:

* `keys`: signing keys (rotation, the active key);
* `signed`: the signed, stored form of a file set, shared by publishing and rollback;
* `publishing`: publish runs as a worker executes them, and releases stored by a publish;
* `runs`: asking for a publish (the run row, handed to a worker once committed);
* `rollback` and `rollout`: new revisions from old content, staged rollouts.
"""
