"""The Dagster layer: thin assets, checks, sensors and resources over the plain domain modules.

These modules do not use ``from __future__ import annotations``: Dagster resolves the config and
resource annotations of asset functions when they are defined, and postponed (string) annotations
defeat that.
"""
