"""The MOSIX API: typed models that are the only schema (CRDs are generated from them)."""
