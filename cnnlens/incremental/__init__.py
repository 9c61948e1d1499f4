"""Exact incremental inference for occlusion (Krypton: Nakandala et al., SIGMOD 2019).

A model's forward is recorded once as a flat op graph (`graph`); each op is classified as
pointwise, windowed (conv / pool), a constant pad, or anything else (`ops`); the region of
every feature map that one occluding patch can change is propagated through the graph
(`plan`); and batches of patches recompute only those regions, pasted into copies of the
clean image's cached maps, switching to dense computation where a region covers all of a
map (`engine`).
"""

from cnnlens.incremental.engine import IncrementalOcclusion, Unsupported

__all__ = ["IncrementalOcclusion", "Unsupported"]
