"""Cross-domain models: learn from source domains, recommend in a target domain."""
