"""Billing rules: Stripe events as typed facts, the ordering rule, plans and the send policy.

Pure: no I/O. `workers/billing` feeds it rows and events and writes back what it decides.
"""
