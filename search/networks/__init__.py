"""Stand-alone networks: training one architecture from scratch with a named recipe, and
exporting it for a device with the recipe its LUT priced."""
