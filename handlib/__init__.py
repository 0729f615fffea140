"""handlib: semi-supervised 3D hand pose estimation with an adversarial motion model."""
__version__ = "0.1.0"
