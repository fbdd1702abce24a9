"""Files on this machine: atomic writes (atomic), names of temporary files and the removal of orphaned ones
(temporary), locks (locks), and video files and cameras read and written frame by frame (video). Knows nothing
of what the files mean."""
