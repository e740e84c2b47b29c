"""Image attacks: content-preserving transforms used to test robustness."""

from .transforms import flip, gaussian_blur, jpeg, resize, rotate

__all__ = ["flip", "gaussian_blur", "jpeg", "resize", "rotate"]
