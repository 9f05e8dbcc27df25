"""Omni's web layer: pages that read across apps (each role's home, the contact search, the
timeline, two-factor sign-in) and the admin's navigation. Their templates are in omni/templates/."""
