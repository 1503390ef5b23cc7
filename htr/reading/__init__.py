"""Reading a line: the model's input from an image, and text (with positions) from its output."""
