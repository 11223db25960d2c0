"""Turning a WhatsApp webhook delivery into the inbox, one tenant-change per transaction."""
