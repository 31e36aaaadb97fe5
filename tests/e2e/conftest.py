"""End-to-end fixtures: the embedded host as a child process."""

from host_process import host_process

__all__ = ["host_process"]
