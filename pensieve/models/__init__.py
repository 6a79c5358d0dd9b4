"""ML weights: resolve a model setting, download it, import GGUF files."""
