"""One-step flow matching for target speech extraction (AD-FlowTSE, MeanFlow-TSE): paths, the
alpha curriculum, the adaptive loss, the MeanFlow/AlphaFlow targets and the few-step samplers.
Pure tensor functions; the systems live in ddtse/systems/flow.py."""
