"""SQL the inbound migration runs verbatim: routing account-level webhooks by WABA id.

Template, quality and account updates name the WhatsApp Business Account (`entry[].id`), not a
phone number, so they are routed through the numbers that account owns. Like the phone-number
route, it is a narrow SECURITY DEFINER read returning only the routing fact.
"""

from __future__ import annotations

FUNCTIONS = """
CREATE OR REPLACE FUNCTION app_resolve_waba(p_waba_id text)
    RETURNS TABLE (organization_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public
    SET app.system = 'on'
    AS $$
        SELECT DISTINCT n.organization_id FROM whatsapp_numbers n WHERE n.waba_id = p_waba_id
    $$;
"""

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS app_resolve_waba(text);
"""


def grant_functions(role: str) -> str:
    return f'GRANT EXECUTE ON FUNCTION app_resolve_waba(text) TO "{role}";'
