"""omni's web layer: staff pages that read across apps."""
