"""Files on this machine: atomic writes (atomic), names of temporary files and the removal of orphaned ones
(temporary), and locks (locks). Knows nothing of what the files mean."""
