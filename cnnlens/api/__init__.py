"""The v1 contract of the REST API, torch-free: the request and response models (what the
service returns and the client parses), the codecs of their binary fields, and the form
fields with their defaults.

    from cnnlens.api import models, codecs, forms
"""

from __future__ import annotations

from cnnlens.api import codecs, forms, models

__all__ = ["codecs", "forms", "models"]
