"""Files on this machine: atomic writes, names of temporary and partial files, their cleanup, and locks.
Knows nothing of what the files mean."""
