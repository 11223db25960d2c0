"""The bulk worker group: chunks of bulk jobs, on the `bulk` queue (see services.bulk_run)."""
