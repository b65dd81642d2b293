"""Webhooks: endpoints a tenant registers, events signed and delivered with retries by a
background sender, and the guard that refuses addresses that are not public (``addresses``).

May import: ``core``, ``auth``, and the job and sweep rows the events describe.
"""
