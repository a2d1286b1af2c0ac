"""Register maps and value decoding: the map model, the codec, the display precision."""
