"""Outbound sends: the send handler the `send_message` actor calls, its sweeps and metrics."""
