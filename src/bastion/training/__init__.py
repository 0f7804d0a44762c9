"""Training a moderation model from a recipe: data in through the adapters, a model artifact out.

Steps: assemble labelled rows from the recipe's sources (shared datasets through their adapters
and label maps, the policy's own examples, the user's files), split each source into train /
early-stopping / calibration parts, fit a multi-label head on frozen encoder embeddings (or
fine-tune the encoder with it) with missing labels masked, calibrate each category on the
held-out part, pick thresholds for the recipe's target there, and save everything with a
manifest that names every source and licence.

A user's file (an annotation export, say) may carry each item's decision path; with
`head.step_targets` the head also learns to answer every decision step (see
models/heads.py), which shapes its hidden layer and is then dropped: the saved model is the
same kind as any other.

Modules: `recipe` (the recipe's schema), `data` (rows, splits, weights), `fit` (heads,
calibration, thresholds), `pipeline` (`train`: the whole run). Training sits above `models`,
`detectors` and `eval`: nothing below imports it.
"""
