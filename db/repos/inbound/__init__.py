"""The inbound path's SQL: messages, contacts, reactions, statuses, events and media.

One style for all of it: fixed statement text run on the unit of work's psycopg connection
(`runner.run`), rows passed as one JSON parameter or as arrays, so psycopg prepares each statement
once per connection and a batch is one round trip. Stored values (statuses, directions) are
rendered from `domain` constants into the text, never from input. Nothing here commits.
"""
