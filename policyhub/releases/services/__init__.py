"""Writes of the releases app, one module per concern:

* `keys`: signing keys (rotation, the active key);
* `revocation`: revoking a compromised key (and its signed list), handing the re-signing on;
* `resign`: re-signing what a revoked key signed, as a worker does it;
* `signed`: the signed, stored form of a file set, shared by publishing, rollback and re-signing;
* `publishing`: publish runs as a worker executes them, and releases stored by a publish;
* `runs`: asking for a publish (the run row, handed to a worker once committed);
* `rollback` and `rollout`: new revisions from old content, staged rollouts.
"""
