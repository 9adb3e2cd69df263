"""Embedded datasets (see :mod:`fitbridge.datasets` and ``NOTICE.md``)."""
