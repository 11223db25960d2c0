"""Application services: the use cases that both the HTTP API and the workers call.

Accepting a send, planning a broadcast, retrying a dead letter: each is written once here, over the
repositories and the unit of work in `db/`, so `ingress/` only parses, authenticates and maps errors,
and `workers/` only decodes jobs and orchestrates. Layering: ingress, workers → services → db → domain.
"""
