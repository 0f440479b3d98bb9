"""Offline side: data, networks, training, export. Needs the ``train`` extra (torch)."""
