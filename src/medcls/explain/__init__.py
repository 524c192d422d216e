"""Explanations of a trained classifier's decisions: Grad-CAM heat maps and their overlays."""

from medcls.explain.gradcam import find_target_layer, gradcam_heatmaps, task_heatmaps

__all__ = ["find_target_layer", "gradcam_heatmaps", "task_heatmaps"]
