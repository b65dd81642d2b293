"""Datasets: the built-ins and the tenants' own uploads, shared by API and worker."""
