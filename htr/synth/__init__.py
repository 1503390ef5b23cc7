"""Training lines beyond the real ones: rendered pen strokes and fonts, augmentation."""
