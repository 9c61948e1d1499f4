"""Reproducible speed and memory comparisons of cnnlens against captum and pytorch-grad-cam.

Run `make bench` (or `python -m benchmarks.run --help`); see benchmarks/README.md.
"""
