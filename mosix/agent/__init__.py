"""The node agent: runs job containers with runc, checkpoints, freezes, restores and migrates them with CRIU.

Modules, one job each: `images` (image cache), `spec` (OCI config), `overlay` (writable layers),
`runc` (the runtime's CLI), `criu` (check, inspect and remap checkpoint images), `output` (stdio
pumps), `jobs` (the job record), `checkpoints` (set naming and layout), `containers` (lifecycle),
`tls`, `server` and `migration` (the authenticated agent API and moving jobs between agents).
"""
