"""Omni's web layer: pages that read across apps (each role's home, the contact search, the
timeline) and the admin's navigation. Their templates are in omni/templates/."""
