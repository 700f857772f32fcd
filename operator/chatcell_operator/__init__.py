"""The ChatCell operator: `kubectl apply` a ChatCell, get a running cell.

It reconciles a ChatCell (``cellchat.io/v1alpha1``) into the cell's Kubernetes objects, its
keyspace ``chat_<cell>`` and the ``cql/`` migrations, and reports what it found on the status.

Layout, from pure to I/O:

- ``spec``: the ChatCell spec parsed into frozen values, with the checks the schema cannot make;
- ``builders``: spec -> manifest dicts (Deployments, Services, ConfigMap, PDBs); no I/O;
- ``conditions``: status conditions and phase as pure functions of what was found;
- ``keyspaces``: the cell's keyspace through the shared runner ``cellchat_schema`` (blocking);
- ``kube``: the few Kubernetes API calls the operator makes (blocking client, run in threads);
- ``reconcile``: one pass over a cell, shared by the kopf handlers and the drift check;
- ``drift``: the periodic re-verification of every cell;
- ``main``: registers the kopf handlers and nothing else; ``run()`` is the console script.

The operator never imports the services (``cellchat``): it shares only the migration runner.
"""

GROUP = "cellchat.io"
VERSION = "v1alpha1"
PLURAL = "chatcells"
KIND = "ChatCell"
