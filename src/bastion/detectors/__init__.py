"""Detectors: one module each, all behind the small Detector protocol, built by name from a registry."""

from bastion.detectors.base import BaseDetector, Detector, DetectorOutput, Evidence
from bastion.detectors.registry import DetectorSetup, register
from bastion.detectors.zero_shot import ZeroShotDetector

__all__ = [
    "BaseDetector",
    "Detector",
    "DetectorOutput",
    "DetectorSetup",
    "Evidence",
    "ZeroShotDetector",
    "register",
]
