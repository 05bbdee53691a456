"""Compliance: tamper evidence for the immutable archive (daily manifests in a hash chain, and
`verify`, which checks them without trusting anything the writer stated)."""
