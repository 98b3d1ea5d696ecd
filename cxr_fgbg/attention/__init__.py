"""Cross-attention capture, token spans and heat maps M-hat (import the submodules; torch is heavy)."""
