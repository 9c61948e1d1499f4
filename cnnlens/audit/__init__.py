"""Batch audits of a model's predictions over a folder, an archive, a CSV list or a URI prefix
of images: per-image predictions, maps and flags, a SQLite store that resumes, an HTML report.

    from cnnlens.audit import AuditConfig, run_audit
    run = run_audit("photos/", "audit-out", AuditConfig(methods=("grad_cam",)), labels="labels.csv")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlens._lazy import lazy_exports

if TYPE_CHECKING:
    from cnnlens.audit.config import AuditConfig
    from cnnlens.audit.engine import AuditRun
    from cnnlens.audit.local import run_audit
    from cnnlens.audit.store import AuditStore, JobInfo

# Imported on first use: the store and the config load no torch.
__getattr__ = lazy_exports(
    __name__,
    {
        "AuditConfig": "cnnlens.audit.config",
        "AuditRun": "cnnlens.audit.engine",
        "run_audit": "cnnlens.audit.local",
        "AuditStore": "cnnlens.audit.store",
        "JobInfo": "cnnlens.audit.store",
    },
)


__all__ = ["AuditConfig", "AuditRun", "AuditStore", "JobInfo", "run_audit"]
