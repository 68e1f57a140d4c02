"""Implicit bias in deep nets (D'Amico, Bocchi & Negri): CNN, ResNet and ViT families trained as the
authors trained them, Bartlett's spectral complexity along training, and the gamma table."""
