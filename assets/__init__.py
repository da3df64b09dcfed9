"""Stylesheets and sample data shipped with the app (installed as bonsai_tui.assets)."""
