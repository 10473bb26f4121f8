"""Our models beside the authors' code: the fidelity harness.

``python -m fidelity`` runs the driver (__main__.py) with one adapter per authors' repository
(vlae.py, svae.py, psvae.py, dct_vae.py, dvp_vae.py); what they share is common.py. SPVAE's
comparison runs in steps (``python -m fidelity.spvae``, and spvae_tf.py in a TensorFlow venv).
Nothing is imported here: spvae_tf.py runs under an interpreter without torch. The commands and
the measured figures: docs/benchmarks.md#fidelity-our-models-beside-the-authors-code.
"""
