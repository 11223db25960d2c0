"""The `/api/v1` layer: API-key auth, rate limits, the envelope, error codes, OpenAPI, and routes.

Wiring into an app: make an `ApiState` with the app, `open()` it in the lifespan's startup and
`close()` it in its shutdown, and mount `api_mount(state)` (or `api_routes(state)` under
`/api/v1`).
"""

from ingress.api.resources import ApiOptions, ApiResources, ApiState, build_resources
from ingress.api.routes import api_mount, api_routes, openapi_document

__all__ = [
    "ApiOptions",
    "ApiResources",
    "ApiState",
    "api_mount",
    "api_routes",
    "build_resources",
    "openapi_document",
]
