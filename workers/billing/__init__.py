"""The billing worker's handler, metrics and Stripe API adapter."""
