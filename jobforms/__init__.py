"""Job-submission forms generated from admin-written app descriptors (not built yet)."""
