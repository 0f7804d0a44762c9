"""Detectors: one module each, all behind the small Detector protocol."""

from bastion.detectors.base import Detector, DetectorOutput, Evidence
from bastion.detectors.zero_shot import ZeroShotDetector

__all__ = ["Detector", "DetectorOutput", "Evidence", "ZeroShotDetector"]
