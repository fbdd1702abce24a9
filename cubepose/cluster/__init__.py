"""Running cubepose on a cluster: the Kubeflow pipeline (pipeline.py) and what its steps publish (publish.py).

publish.py runs inside the containers and needs no kfp; pipeline.py imports kfp to build and
compile the pipeline on the workstation that submits it.
"""
