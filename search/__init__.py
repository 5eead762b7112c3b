"""The DNAS search over the FBNet space, priced by a device LUT (see README)."""
