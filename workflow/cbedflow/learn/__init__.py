"""Learning: the network registry (:mod:`.networks`), the tf.data pipeline
(:mod:`.data`), the Horovod training loop (:mod:`.loop`), held-out
evaluation (:mod:`.evaluate`) and model manifests (:mod:`.manifest`).

Importing this package imports nothing heavy; TensorFlow is imported by the
functions that need it (the training environment).
"""
