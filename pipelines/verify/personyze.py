"""What ``cdp-sync verify personyze`` counts: nothing yet, and why.

The Personyze REST API (contract ``api/personyze.md``) has no count: no ``count`` modifier, no
total in any answer (a read is a bare JSON array of at most 1,000 rows), and range conditions are
"slow queries" the API throttles and caps at 50 rows. Counting a table would mean reading it
again, which a verification must not do. Every resource is therefore reported ``not countable``
(with the rows the destination holds), never skipped.
"""

from __future__ import annotations

from pipelines.verify import Check, Context, Where

RESOURCES = ("users", "events", "sessions_archive", "summary_actions", "products", "articles", "placeholders",
             "actions", "conditions", "user_lists")
TABLES: dict[str, str] = {}
REASON = "the Personyze API states no count: bare arrays of at most 1,000 rows"


def plan(ctx: Context, api_key: str, base_url: str) -> list[Check]:
    return [Check(resource, "all", None, resource, Where(), note=REASON) for resource in ctx.resources]
