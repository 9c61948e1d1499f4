"""Batch audits of a model's predictions over a folder, an archive or a CSV list of images:
per-image predictions, maps and flags, a SQLite store that resumes, an HTML report.

    from cnnlens.audit import AuditConfig, run_audit
    run = run_audit("photos/", "audit-out", AuditConfig(methods=("grad_cam",)), labels="labels.csv")
"""

from __future__ import annotations

from cnnlens.audit.config import AuditConfig
from cnnlens.audit.engine import AuditRun
from cnnlens.audit.local import run_audit
from cnnlens.audit.store import AuditStore, JobInfo

__all__ = ["AuditConfig", "AuditRun", "AuditStore", "JobInfo", "run_audit"]
