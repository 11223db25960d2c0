"""Security: the runtime's roles cannot lift row-level security, only the application role may
call the routing functions, and the event store is append-only.

- The application role logs in itself (DATABASE_URL); `app.system` opens the system scope only for
  the maintenance role (DATABASE_SYSTEM_URL) and the owner.
- EXECUTE on every SECURITY DEFINER function is revoked from PUBLIC and granted to the
  application role alone (one of them returns a number's access token).
- `event_store`: no UPDATE, DELETE or TRUNCATE for either runtime role, and triggers refusing them.

Revision ID: 0008
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db import rls

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _role(name: str, default: str) -> str:
    role = op.get_context().config.attributes.get(name, default)  # type: ignore[union-attr]
    return str(role)


def upgrade() -> None:
    app_role = _role("app_role", "adsapp_app")
    system_role = _role("system_role", "adsapp_system")
    owner = str(op.get_bind().execute(sa.text("SELECT current_user")).scalar_one())
    op.execute(rls.create_login_roles(app_role, system_role))
    op.execute(rls.gated_system_scope(system_role, owner))
    op.execute(rls.restrict_definer_functions(app_role))
    op.execute(rls.append_only_event_store(app_role, system_role))


def downgrade() -> None:
    app_role = _role("app_role", "adsapp_app")
    system_role = _role("system_role", "adsapp_system")
    op.execute(rls.rewritable_event_store(app_role))
    op.execute(rls.reopen_definer_functions())
    op.execute(rls.UNGATED_SYSTEM_SCOPE)
    op.execute(rls.revoke_system_role(system_role))
